"""The README stays true to the code: its option table is the generated one, and its
quick-start commands are the ones CI runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiogate.cli import usage_table_markdown

ROOT = Path(__file__).resolve().parent.parent


def load_updater():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "update_readme", ROOT / "docs/update_readme.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_option_table_is_generated_from_config() -> None:
    text = (ROOT / "README.md").read_text()
    updater = load_updater()
    assert updater.with_table(text, usage_table_markdown()) == text, (
        "README.md option table is stale: run python docs/update_readme.py"
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    command = next(line for line in ci.splitlines() if "pytest" in line)
    assert command.strip() in readme
