"""``import_app`` and ``import_object``: every way to name an app, every way to fail.

Modules are written into a fresh directory per test (passed as ``app_dir``) under
names unique to the test, and ``sys.path``/``sys.modules`` are restored afterwards.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import wsgiref.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiogate.errors import AppImportError
from aiogate.handlers import ServerHandler
from aiogate.importer import import_app, import_object

WSGI_APP = """
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"default"]

def app(environ, start_response):
    start_response("200 OK", [])
    return [b"app"]
"""


class AppDir:
    """A directory of throwaway modules whose names are unique to one test."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix

    def module(self, name: str, source: str) -> str:
        """Write ``<prefix>_<name>.py`` (or a package, for dotted names); its name."""
        parts = f"{self.prefix}_{name}".split(".")
        directory = self.path
        for package in parts[:-1]:
            directory = directory / package
            directory.mkdir(exist_ok=True)
            (directory / "__init__.py").touch()
        (directory / f"{parts[-1]}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return ".".join(parts)


@pytest.fixture
def app_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AppDir]:
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    prefix = "m" + "".join(c for c in request.node.name if c.isalnum())[:40]
    yield AppDir(tmp_path, prefix)
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        if name.startswith(prefix):
            del sys.modules[name]


def call(app: Any) -> list[bytes]:
    return list(app({}, lambda status, headers, exc_info=None: None))


def message_of(excinfo: pytest.ExceptionInfo[AppImportError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_module_and_attribute(app_dir: AppDir) -> None:
    name = app_dir.module("wsgi", WSGI_APP)
    assert call(import_app(f"{name}:app", app_dir=str(app_dir.path))) == [b"app"]


def test_module_alone_means_application(app_dir: AppDir) -> None:
    name = app_dir.module("wsgi", WSGI_APP)
    assert call(import_app(name, app_dir=str(app_dir.path))) == [b"default"]


def test_dotted_attribute_and_package(app_dir: AppDir) -> None:
    name = app_dir.module(
        "pkg.sub.wsgi",
        """
        class Holder:
            class inner:
                @staticmethod
                def app(environ, start_response):
                    start_response("200 OK", [])
                    return [b"nested"]
        """,
    )
    target = f"{name}:Holder.inner.app"
    assert call(import_app(target, app_dir=str(app_dir.path))) == [b"nested"]


def test_app_dir_goes_first_on_sys_path(app_dir: AppDir) -> None:
    name = app_dir.module("wsgi", WSGI_APP)
    import_app(name, app_dir=str(app_dir.path))
    assert sys.path[0] == str(app_dir.path)
    # A second import does not stack another copy.
    import_app(name, app_dir=str(app_dir.path))
    assert sys.path.count(str(app_dir.path)) == 1


def test_app_dir_defaults_to_the_current_directory(
    app_dir: AppDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = app_dir.module("wsgi", WSGI_APP)
    monkeypatch.chdir(app_dir.path)
    assert call(import_app(f"{name}:app")) == [b"app"]
    assert sys.path[0] == os.getcwd()


def test_relative_app_dir_is_made_absolute(
    app_dir: AppDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = app_dir.path / "src"
    sub.mkdir()
    (sub / f"{app_dir.prefix}_inner.py").write_text(WSGI_APP)
    importlib.invalidate_caches()
    monkeypatch.chdir(app_dir.path)
    assert call(import_app(f"{app_dir.prefix}_inner:app", app_dir="src")) == [b"app"]
    assert sys.path[0] == str(sub)


def test_factory(app_dir: AppDir) -> None:
    name = app_dir.module(
        "factory",
        """
        calls = []

        def create_app():
            calls.append(1)
            def app(environ, start_response):
                start_response("200 OK", [])
                return [b"made"]
            return app
        """,
    )
    app = import_app(f"{name}:create_app", factory=True, app_dir=str(app_dir.path))
    assert call(app) == [b"made"]
    assert sys.modules[name].calls == [1]


def test_class_as_app(app_dir: AppDir) -> None:
    # PEP 3333 allows a class: calling it returns the response iterable.
    name = app_dir.module(
        "klass",
        """
        class App:
            def __init__(self, environ, start_response):
                start_response("200 OK", [])
            def __iter__(self):
                yield b"klass"
        """,
    )
    assert call(import_app(f"{name}:App", app_dir=str(app_dir.path))) == [b"klass"]


@pytest.mark.parametrize(
    "target",
    [
        "",
        ":app",
        "mod:",
        "mod:app:extra",
        "1mod:app",
        "mod:1app",
        "mod..x:app",
        "mod:a..b",
        "mod-name:app",
        " mod:app",
        "mod.:app",
    ],
)
def test_malformed_target(target: str) -> None:
    with pytest.raises(AppImportError, match="malformed target") as excinfo:
        import_app(target)
    assert repr(target) in message_of(excinfo)


def test_target_module_missing(app_dir: AppDir) -> None:
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{app_dir.prefix}_nope:app", app_dir=str(app_dir.path))
    message = message_of(excinfo)
    assert f"module '{app_dir.prefix}_nope' not found" in message
    assert str(app_dir.path) in message


def test_target_parent_package_missing(app_dir: AppDir) -> None:
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{app_dir.prefix}_nopkg.wsgi:app", app_dir=str(app_dir.path))
    assert f"module '{app_dir.prefix}_nopkg' not found" in message_of(excinfo)


def test_target_submodule_missing_in_existing_package(app_dir: AppDir) -> None:
    package = app_dir.module("pkg.present", WSGI_APP).rpartition(".")[0]
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{package}.absent:app", app_dir=str(app_dir.path))
    assert f"module '{package}.absent' not found" in message_of(excinfo)


def test_import_error_inside_the_module_names_the_inner_module(app_dir: AppDir) -> None:
    name = app_dir.module("needsdep", "import some_dependency_not_installed_xyz\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:app", app_dir=str(app_dir.path))
    assert message_of(excinfo) == (
        f"error while importing '{name}': ModuleNotFoundError: "
        "No module named 'some_dependency_not_installed_xyz'"
    )
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)


def test_import_raising_keeps_the_cause(app_dir: AppDir) -> None:
    name = app_dir.module("boom", "raise RuntimeError('database\\n  unreachable')\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:app", app_dir=str(app_dir.path))
    assert message_of(excinfo) == (
        f"error while importing '{name}': RuntimeError: database unreachable"
    )
    assert isinstance(excinfo.value.__cause__, RuntimeError)


def test_sys_exit_at_import_is_an_import_failure(app_dir: AppDir) -> None:
    name = app_dir.module("quits", "import sys\nsys.exit('DATABASE_URL is not set')\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:app", app_dir=str(app_dir.path))
    assert message_of(excinfo) == (
        f"error while importing '{name}': SystemExit: DATABASE_URL is not set"
    )


def test_syntax_error_in_module(app_dir: AppDir) -> None:
    name = app_dir.module("syntax", "def broken(:\n")
    with pytest.raises(AppImportError, match="SyntaxError") as excinfo:
        import_app(name, app_dir=str(app_dir.path))
    assert message_of(excinfo).startswith(f"error while importing '{name}': ")


def test_attribute_missing(app_dir: AppDir) -> None:
    name = app_dir.module("wsgi", WSGI_APP)
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:nothere", app_dir=str(app_dir.path))
    assert message_of(excinfo) == (
        f"'{name}' has no attribute 'nothere' (looking up '{name}:nothere')"
    )
    assert excinfo.value.__cause__ is None


def test_default_attribute_missing(app_dir: AppDir) -> None:
    name = app_dir.module("noapp", "x = 1\n")
    with pytest.raises(AppImportError, match="has no attribute 'application'"):
        import_app(name, app_dir=str(app_dir.path))


def test_dotted_attribute_missing(app_dir: AppDir) -> None:
    name = app_dir.module("holder", "class Holder:\n    pass\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:Holder.app", app_dir=str(app_dir.path))
    assert message_of(excinfo).startswith(f"'{name}:Holder' has no attribute 'app'")


def test_not_callable(app_dir: AppDir) -> None:
    name = app_dir.module("notcallable", "app = 42\nnone = None\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:app", app_dir=str(app_dir.path))
    assert message_of(excinfo) == f"'{name}:app' is not callable (it is a int)"
    with pytest.raises(AppImportError, match=r"is not callable \(it is None\)"):
        import_app(f"{name}:none", app_dir=str(app_dir.path))


def test_factory_served_without_factory_flag_is_caught(app_dir: AppDir) -> None:
    name = app_dir.module("forgot", "def create_app():\n    return None\n")
    with pytest.raises(AppImportError, match="pass --factory") as excinfo:
        import_app(f"{name}:create_app", app_dir=str(app_dir.path))
    assert "cannot be called as app(environ, start_response)" in message_of(excinfo)


def test_factory_not_callable(app_dir: AppDir) -> None:
    name = app_dir.module("fnc", "create_app = 'nope'\n")
    with pytest.raises(AppImportError, match=r"app factory .* is not callable"):
        import_app(f"{name}:create_app", factory=True, app_dir=str(app_dir.path))


def test_factory_raising(app_dir: AppDir) -> None:
    name = app_dir.module("fraise", "def make():\n    raise KeyError('SECRET_KEY')\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:make", factory=True, app_dir=str(app_dir.path))
    assert message_of(excinfo) == (
        f"error while calling app factory '{name}:make': KeyError: 'SECRET_KEY'"
    )
    assert isinstance(excinfo.value.__cause__, KeyError)


def test_factory_returning_non_callable(app_dir: AppDir) -> None:
    name = app_dir.module("fret", "def make():\n    return 'app'\n")
    with pytest.raises(AppImportError, match="returned a str, which is not a WSGI"):
        import_app(f"{name}:make", factory=True, app_dir=str(app_dir.path))


def test_factory_returning_wrong_callable(app_dir: AppDir) -> None:
    name = app_dir.module("fwrong", "def make():\n    return lambda: None\n")
    with pytest.raises(AppImportError) as excinfo:
        import_app(f"{name}:make", factory=True, app_dir=str(app_dir.path))
    assert "pass --factory" not in message_of(excinfo)
    assert "cannot be called as app(environ, start_response)" in message_of(excinfo)


def test_builtin_callable_without_signature_is_accepted() -> None:
    # Nothing to inspect: trust it (C extensions can be WSGI apps).
    app: object = import_app("builtins:print")
    assert app is print


# Apps whose own signature takes (environ, start_response) while something they
# wrap, or nothing at all, says otherwise. Each must be served (issue 13).
WRAPPED_APPS = """
import functools

from werkzeug.wrappers import Request, Response


@Request.application  # functools.wraps over view(request); application(*args)
def werkzeug_app(request):
    return Response("werkzeug " + request.path)


def as_wsgi(view):
    # A decorator that turns view(path) into a WSGI app and keeps the view's name
    # and docstring: inspect.signature(app) would report (path).
    @functools.wraps(view)
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [view(environ["PATH_INFO"]).encode()]

    return app


@as_wsgi
def wrapped_app(path):
    return "wrapped " + path


class App:
    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"instance " + environ["PATH_INFO"].encode()]


instance_app = App()


class Opaque:
    # Nothing about this callable can be inspected (as with some C and proxy
    # objects): a signature it cannot give is no reason to refuse it.
    @property
    def __signature__(self):
        raise RuntimeError("no signature here")

    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"opaque " + environ["PATH_INFO"].encode()]


opaque_app = Opaque()
"""


def call_with_environ(app: Any, path: str) -> tuple[str, bytes]:
    """Call ``app`` with a complete environ (werkzeug reads it): status and body."""
    environ: dict[str, Any] = {"PATH_INFO": path}
    wsgiref.util.setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return statuses[0], body


@pytest.mark.parametrize(
    ("attribute", "body"),
    [
        ("werkzeug_app", b"werkzeug /p"),
        ("wrapped_app", b"wrapped /p"),
        ("instance_app", b"instance /p"),
        ("opaque_app", b"opaque /p"),
    ],
)
def test_any_callable_taking_environ_and_start_response_is_served(
    app_dir: AppDir, attribute: str, body: bytes
) -> None:
    name = app_dir.module("wrapped", WRAPPED_APPS)
    app = import_app(f"{name}:{attribute}", app_dir=str(app_dir.path))
    assert call_with_environ(app, "/p") == ("200 OK", body)


def test_a_wrapper_is_judged_by_its_own_signature(app_dir: AppDir) -> None:
    # The other way round from wrapped_app: wraps() over a real app, on a wrapper
    # that cannot take two arguments. It is the wrapper that gets called.
    name = app_dir.module(
        "badwrapper",
        """
        import functools

        def application(environ, start_response):
            return []

        @functools.wraps(application)
        def broken():
            return application
        """,
    )
    with pytest.raises(AppImportError, match="pass --factory"):
        import_app(f"{name}:broken", app_dir=str(app_dir.path))


HANDLERS = """
from aiogate.handlers import ServerHandler

class Custom(ServerHandler):
    server_software = "custom/1"

class NotAHandler:
    pass

import wsgiref.handlers

class Stdlib(wsgiref.handlers.SimpleHandler):
    server_software = "stdlib/1"

value = 3
"""


def test_import_object_returns_a_handler_class(app_dir: AppDir) -> None:
    name = app_dir.module("handlers", HANDLERS)
    sys.path.insert(0, str(app_dir.path))
    cls = import_object(f"{name}:Custom")
    assert issubclass(cls, ServerHandler)
    assert cls.server_software == "custom/1"
    # pkgutil.resolve_name's dotted form works too.
    assert import_object(f"{name}.Custom") is cls
    assert import_object("aiogate.handlers:ServerHandler") is ServerHandler


@pytest.mark.parametrize(
    ("attribute", "match"),
    [
        (
            "NotAHandler",
            r"the class NotAHandler is not a subclass of aiogate\.handlers\.ServerHandler",
        ),
        ("value", r"it is of type int, not a subclass"),
        # Written for the standard library: why it cannot run, and what to do.
        (
            "Stdlib",
            r"Stdlib is a wsgiref handler that writes raw bytes to a stream; .* "
            r"Subclass aiogate\.handlers\.ServerHandler .* move your overrides there",
        ),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_import_object_errors(app_dir: AppDir, attribute: str, match: str) -> None:
    name = app_dir.module("handlers", HANDLERS)
    sys.path.insert(0, str(app_dir.path))
    with pytest.raises(AppImportError, match=match):
        import_object(f"{name}:{attribute}")


@pytest.mark.parametrize("target", ["", "nodots", "mod:", ":Cls", "a:b:c"])
def test_import_object_malformed(target: str) -> None:
    with pytest.raises(AppImportError, match="malformed target"):
        import_object(target)


def test_import_object_module_missing() -> None:
    with pytest.raises(AppImportError, match="not found"):
        import_object("aiogate_no_such_module_xyz:Handler")
