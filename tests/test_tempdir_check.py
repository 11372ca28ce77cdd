"""At start, the server says in one warning when no temporary file can be made (a
read-only root filesystem without a tmpfs), naming the directory and what fails
without it, and serves all the same; it stays quiet when nothing could ever need one.
The container tests (test_docker.py) check the same under ``docker run --read-only``,
and test_limits.py the 503 a body gets when it cannot be stored.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest

from aiogate import Server


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "aiogate.error" and record.levelno == logging.WARNING
    ]


@pytest.fixture
def missing_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """tempfile's directory, as body.py and writer.py will use it, does not exist."""
    missing = tmp_path / "gone"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    return missing


async def test_an_unusable_temporary_directory_is_one_warning(
    caplog: pytest.LogCaptureFixture, missing_tmpdir: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="aiogate.error")
    async with Server(app, port=0, body_buffer_size=1000):
        pass
    (warning,) = warnings_of(caplog)
    assert str(missing_tmpdir) in warning
    assert "request bodies over --body-buffer-size (1000 bytes) will get a 503" in (
        warning
    )
    assert "docker run --tmpfs /tmp" in warning


async def test_a_usable_one_or_no_need_for_one_is_quiet(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiogate.error")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    async with Server(app, port=0):
        pass
    # Nothing can spill: bodies fit in memory, responses never spool.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    async with Server(
        app,
        port=0,
        limit_request_body=1000,
        body_buffer_size=1000,
        response_spool_size=0,
    ):
        pass
    assert warnings_of(caplog) == []
