"""Settings from a file: ``[tool.aiogate]`` in ``pyproject.toml``, or ``--config FILE``.

Owns: ``load_file_settings`` (find and read the TOML file) and ``toml_value`` (one
value written back as TOML, for ``--print-config``). The keys are the names of the
command-line options without their dashes (``limit_concurrency`` or
``limit-concurrency``), plus ``app`` for the target. Checking each value against its
option is ``cli.py``'s job, since it owns the options. Runs in the main thread at
startup; reads one file, nothing else.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["PYPROJECT", "load_file_settings", "toml_value"]

PYPROJECT = "pyproject.toml"


def load_file_settings(path: str | None, directory: Path) -> tuple[dict[str, Any], str]:
    """The settings and the file they came from (``""`` when there is none).

    ``path`` is ``--config`` (``[tool.aiogate]`` if the file has that table, else its
    top level); without it, ``pyproject.toml`` in ``directory`` is used when it has a
    ``[tool.aiogate]`` table. Keys come back with ``-`` turned into ``_``. Raises
    ``ConfigError`` for a file that cannot be read or parsed.
    """
    if path is None:
        candidate = directory / PYPROJECT
        if not candidate.is_file():
            return {}, ""
        data = _read(candidate)
        table = data.get("tool", {}).get("aiogate")
        if table is None:
            return {}, ""
        source = str(candidate)
    else:
        data = _read(Path(path))
        table = data.get("tool", {}).get("aiogate", data)
        source = path
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [tool.aiogate] must be a table")
    settings: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in settings:
            raise ConfigError(f"{source}: {key!r} is given twice")
        settings[name] = value
    return settings, source


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(path)!r}: {exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {exc}"
        ) from None


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (strings as basic strings: JSON's escapes are
    TOML's for everything json.dumps produces with ensure_ascii)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, type):
        value = f"{value.__module__}:{value.__qualname__}"
    return json.dumps(str(value))
