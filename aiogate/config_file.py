"""Settings from a file: ``[tool.aiogate]`` in ``pyproject.toml``, ``-c``/``--config
FILE`` (TOML), or ``-c FILE.py``, a Python config file as gunicorn's.

Owns: ``load_file_settings`` (find and read the file) and ``toml_value`` (one value
written back as TOML, for ``--print-config``). The keys are the names of the
command-line options without their dashes (``limit_concurrency`` or
``limit-concurrency``), plus ``app`` for the target. Checking each value against its
option is ``options.py``'s job, since it owns the options. Runs in the main thread
at startup.

A Python file is executed, as gunicorn does, once, in the process that reads the
settings (the supervisor; the workers are forked from it). Its module-level names
are settings (aiogate's names, or gunicorn's where they map: ``GUNICORN_NAMES``),
hooks (functions named as in ``hooks.Hook``), or ignored when private: a leading
underscore, a module, or a function or class imported from elsewhere. Any other name
is refused with the name, so a misspelt setting is not silently ignored.
"""

from __future__ import annotations

import json
import tomllib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import option_fields
from .errors import ConfigError
from .hooks import Hook, Hooks

__all__ = [
    "GUNICORN_NAMES",
    "PYPROJECT",
    "load_file_settings",
    "load_python_config",
    "toml_value",
]

PYPROJECT = "pyproject.toml"

#: gunicorn's setting names that have an aiogate meaning, and that setting's name.
#: ``timeout``: gunicorn kills a worker silent for that long; aiogate's nearest is
#: the per-request deadline (a 503 or 504 for the request, the worker lives on).
GUNICORN_NAMES = {
    "wsgi_app": "app",
    "chdir": "chdir",  # as --chdir: the command line changes directory (peer_flags)
    "pidfile": "pid",  # (the --pid setting of issue 15's process management)
    "preload_app": "preload",
    "keepalive": "timeout_keep_alive",
    "timeout": "timeout_request",
    "graceful_timeout": "timeout_graceful_shutdown",
    "loglevel": "log_level",
    "logconfig": "log_config",
    "access_log_format": "access_log_format",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "ca_certs": "ssl_ca_certs",
    "ciphers": "ssl_ciphers",
    "cert_reqs": "ssl_cert_reqs",
}
#: gunicorn's settings with no aiogate meaning, and what to do instead: refused
#: with that line rather than as an unknown name.
GUNICORN_WITHOUT_MEANING = {
    "worker_class": "aiogate has one kind of worker, an event loop with threads "
    "(gunicorn's gthread); remove it and set threads",
    "worker_connections": "set limit_connections",
    "proc_name": "aiogate does not set process titles; remove it",
    "daemon": "run aiogate under a process manager (systemd, Docker) instead",
    "pythonpath": "set app_dir, or PYTHONPATH",
    "raw_env": "set the variables in the environment aiogate starts in, or in "
    "an env_file",
    "sendfile": "aiogate always sends wsgi.file_wrapper files with sendfile",
}
#: The app options, which are not ``Config`` fields but may be set in a file.
APP_KEYS = frozenset({"app", "factory", "app_dir", "chdir"})


def load_file_settings(path: str | None, directory: Path) -> tuple[dict[str, Any], str]:
    """The settings and the file they came from (``""`` when there is none).

    ``path`` is ``--config`` (``[tool.aiogate]`` if the file has that table, else its
    top level); without it, ``pyproject.toml`` in ``directory`` is used when it has a
    ``[tool.aiogate]`` table. Keys come back with ``-`` turned into ``_``. Raises
    ``ConfigError`` for a file that cannot be read or parsed. (A ``.py`` file: see
    ``load_python_config``, which also gives its hooks.)
    """
    if path is not None and path.endswith(".py"):
        return load_python_config(path)[0], path
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


def load_python_config(path: str) -> tuple[dict[str, Any], Hooks]:
    """Execute the Python config file ``path``: its settings (gunicorn's names
    translated) and its hooks. ``ConfigError`` names a file that cannot be read or
    run, and a module-level name that is none of setting, hook or private."""
    try:
        source = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from None
    module = types.ModuleType("__config__")
    module.__file__ = str(Path(path).resolve())
    try:
        exec(compile(source, path, "exec"), module.__dict__)  # gunicorn's own way
    except (Exception, SystemExit) as exc:  # (sys.exit() in it too: a failure)
        where = ""
        if isinstance(exc, SyntaxError):
            where = f" (line {exc.lineno})"
        raise ConfigError(
            f"config file {path!r} failed{where}: {type(exc).__name__}: {exc}"
        ) from None
    fields = {item.name for item in option_fields()}
    hook_names = {hook.value for hook in Hook}
    settings: dict[str, Any] = {}
    hooks: dict[str, Callable[..., object]] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or _imported(value, module.__name__):
            continue
        if name in hook_names:
            if not callable(value):
                raise ConfigError(f"{path}: hook {name} must be a function")
            hooks[name] = value
            continue
        if name in _LOG_FILES:
            _check_log_file(path, name, value, settings)
            continue
        key = GUNICORN_NAMES.get(name, name)
        if key not in fields and name in GUNICORN_WITHOUT_MEANING:
            raise ConfigError(
                f"{path}: gunicorn's {name} has no aiogate meaning: "
                f"{GUNICORN_WITHOUT_MEANING[name]}"
            )
        if key not in fields and key not in APP_KEYS:
            raise ConfigError(
                f"{path}: unknown name {name!r} (not a setting or a server hook; "
                "prefix a helper with _)"
            )
        if key in settings:
            raise ConfigError(f"{path}: {key!r} is given twice (as {name!r} too)")
        settings[key] = _translate(key, value)
    try:
        return settings, Hooks(hooks)  # (checks what each hook can be called with)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


#: gunicorn's log destinations, as on the command line (``--access-logfile``,
#: ``--error-logfile``): a file name, or ``"-"`` for the standard streams.
_LOG_FILES = frozenset({"accesslog", "errorlog"})


def _check_log_file(
    path: str, name: str, value: object, settings: dict[str, Any]
) -> None:
    """``accesslog = FILE`` (``"-"``: stdout) turns the access log on and sends it
    there (None: off); ``errorlog = FILE`` (``"-"``: stderr) is where the error log
    goes."""
    if value is None and name == "accesslog":
        settings["access_log"] = False
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {name} = {value!r}: expected a file name or '-'")
    if name == "accesslog":
        settings["access_log"] = True
        settings["access_log_file"] = value
    else:
        settings["error_log_file"] = value


def _translate(key: str, value: Any) -> Any:
    """gunicorn's spellings of a value: ``loglevel = "INFO"``, a list of addresses
    for ``forwarded_allow_ips``."""
    if key == "log_level" and isinstance(value, str):
        return value.lower()
    if key == "forwarded_allow_ips" and isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return value


def _imported(value: object, module_name: str) -> bool:
    """A module, or a function or class defined elsewhere (``from x import y``)."""
    if isinstance(value, types.ModuleType):
        return True
    if callable(value) and hasattr(value, "__module__"):
        return getattr(value, "__module__", None) != module_name
    return False


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
