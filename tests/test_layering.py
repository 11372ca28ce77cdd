"""The dependency direction of ARCHITECTURE.md, checked on the source.

Each aiogate module may import only the aiogate modules listed for it, and the sans-IO
and thread-side modules must not import I/O or loop machinery. A new module must be
added to ``ALLOWED`` (that is the point: its place in the layers is a decision).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aiogate"

LEAF = {"errors", "_types", "_version"}
SANS_IO = {
    "response",
    "environ",
    "forwarded",
    "proxy_headers",
    "proxy_protocol",
    "access_log",
    "metrics",
}
# A package counts as one module: the union of its files' imports, its own files
# not counted.
PACKAGES = {"http"}
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "errors": set(),
    "_types": set(),
    "config": {"errors", "_types"},
    "response": LEAF,
    "environ": LEAF,
    "forwarded": LEAF,
    "proxy_headers": LEAF | {"forwarded"},
    "proxy_protocol": LEAF,
    "access_log": LEAF,
    "metrics": LEAF | {"access_log"},  # Refusal: the reasons, one enum for both
    "tally": {"metrics"},
    "log_writer": LEAF | {"access_log"},
    "http": LEAF | {"response", "environ"},
    "body": LEAF,
    "writer": LEAF,
    "thread_pool": LEAF,
    # handlers imports server_handler only lazily, for the public name
    # aiogate.handlers.ServerHandler.
    "handlers": LEAF | {"response", "server_handler"},
    "sink_handler": LEAF | {"handlers", "response"},
    "server_handler": LEAF
    | SANS_IO
    | {"handlers", "sink_handler", "body", "writer", "config", "wsgi_errors"},
    "wsgi_errors": LEAF,
    "flow_control": LEAF,
    "deadlines": set(),
    "tls": LEAF | {"config"},
    "sockets": LEAF | {"config"},
    "listener": LEAF,
    "server_state": LEAF
    | {"access_log", "body", "config", "hooks", "http", "metrics", "response"}
    | {"wsgi_errors"}
    | {"thread_pool", "writer"},
    "observe": LEAF
    | {"access_log", "http", "metrics", "server_state", "tally", "thread_pool"},
    # file_sender names dispatch's RequestCycle for type checking only (the cycle it
    # sends for); at run time only dispatch imports it.
    "file_sender": LEAF | {"http", "writer", "dispatch"},
    "dispatch": LEAF
    | {"body", "writer", "file_sender", "flow_control", "http", "server_state"}
    | {"access_log"},
    "closing": LEAF
    | {"access_log", "dispatch", "flow_control", "http", "observe", "server_state"},
    "protocol": LEAF
    | {
        "access_log",
        "closing",
        "listener",
        "http",
        "dispatch",
        "metrics",
        "observe",
        "server_state",
        "flow_control",
        "tls",
    },
    "proxied": LEAF
    | {"access_log", "http", "protocol", "proxy_protocol", "proxy_headers"}
    | {"listener", "server_state"},
    "server": LEAF
    | {
        "protocol",
        "proxied",
        "server_state",
        "observe",
        "http",
        "deadlines",
        "config",
        "hooks",
        "server_handler",
        "thread_pool",
        "proxy_headers",
        "access_log",
        "metrics",
        "log_writer",
        "tls",
        "sockets",
        "listener",
    },
    "importer": LEAF | {"config", "server_handler"},
    "logs": LEAF | {"config"},
    "config_file": LEAF | {"config", "hooks"},
    "hooks": LEAF | {"config"},
    "reloader": LEAF,
    "supervisor": LEAF | {"config", "systemd", "hooks", "tally"},
    # Process management (issue 15): each needs only the errors.
    "env_file": LEAF,
    "pidfile": LEAF,
    "privileges": LEAF,
    "systemd": LEAF,
    "demo": LEAF,
    "cli": LEAF
    | {
        "server",
        "importer",
        "logs",
        "config",
        "config_file",
        "handlers",
        "hooks",
        "reloader",
        "sockets",
        "supervisor",
        "options",
        "healthcheck",
        "env_file",
        "pidfile",
        "privileges",
        "systemd",
        "peer_flags",
    },
    "options": LEAF | {"config", "config_file", "hooks"},
    "peer_flags": LEAF | {"options"},
    "healthcheck": LEAF | {"config", "options"},
    "__main__": {"cli"},
    "__init__": LEAF | {"server", "config", "handlers", "hooks", "logs"},
}
# No I/O or event loop in the sans-IO core; no asyncio or h11 on the thread side.
FORBIDDEN: dict[str, set[str]] = {
    **{
        name: {"asyncio", "socket", "selectors", "threading", "logging", "uvloop"}
        for name in SANS_IO | {"http", "config", "errors", "_types"}
    },
    **{
        name: {"asyncio", "uvloop", "h11", "socket"}
        for name in (
            "handlers",
            "server_handler",
            "sink_handler",
            "wsgi_errors",
            "body",
            "writer",
            "thread_pool",
        )
    },
}


def imports_of(path: Path, depth: int = 1) -> tuple[set[str], set[str]]:
    """(aiogate modules imported, top-level external modules imported). ``depth``
    is 2 for a file inside a subpackage, whose ``from .x`` imports stay inside it."""
    internal: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.level < depth:
                continue  # within the same subpackage
            if node.level:  # relative: from .x import y / from . import x
                if node.module:
                    internal.add(node.module.split(".")[0])
                else:
                    internal.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "aiogate":
                parts = node.module.split(".")
                if len(parts) > 1:
                    internal.add(parts[1])
                else:
                    internal.update(alias.name for alias in node.names)
            elif node.module:
                external.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "aiogate" and len(parts) > 1:
                    internal.add(parts[1])
                else:
                    external.add(parts[0])
    return internal, external


MODULES = sorted([path.stem for path in PACKAGE.glob("*.py")] + list(PACKAGES))


def files_of(module: str) -> list[Path]:
    if module in PACKAGES:
        return sorted((PACKAGE / module).glob("*.py"))
    return [PACKAGE / f"{module}.py"]


def test_every_module_has_a_place() -> None:
    assert set(MODULES) <= set(ALLOWED), set(MODULES) - set(ALLOWED)


@pytest.mark.parametrize("module", MODULES)
def test_imports_follow_the_layers(module: str) -> None:
    internal: set[str] = set()
    external: set[str] = set()
    depth = 2 if module in PACKAGES else 1
    for path in files_of(module):
        found_internal, found_external = imports_of(path, depth)
        internal |= found_internal
        external |= found_external
    internal.discard(module)
    assert internal <= ALLOWED.get(module, set()), (
        f"{module} imports {sorted(internal - ALLOWED.get(module, set()))}"
    )
    assert not external & FORBIDDEN.get(module, set()), (
        f"{module} imports {sorted(external & FORBIDDEN[module])}"
    )


@pytest.mark.parametrize("module", MODULES)
def test_module_has_a_docstring(module: str) -> None:
    for path in files_of(module):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} needs a docstring"


def test_every_subpackage_is_in_the_distribution() -> None:
    # setuptools installs only the packages listed: a subpackage left out works in
    # an editable install and is missing from the wheel (and the Docker image).
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
        for path in PACKAGE.rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
