"""Finding the WSGI app (and a custom handler class) from a ``module:attribute`` string.

Owns: ``import_app`` and ``import_object``, and the one-line messages of
``AppImportError`` for every way that can fail. Runs in the main thread at startup,
before any socket is bound (fail fast), called by ``cli.py``.

Like gunicorn and uvicorn, the app directory (the current directory unless told
otherwise) goes first on ``sys.path`` and stays there, so an app imported from it can
import its sibling modules later too.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import TYPE_CHECKING, Any

from .errors import AppImportError

if TYPE_CHECKING:
    from ._types import WSGIApplication
    from .server_handler import ServerHandler

__all__ = ["import_app", "import_object"]

#: The attribute looked up when the target names only a module (gunicorn's default).
DEFAULT_ATTRIBUTE = "application"


def import_app(
    target: str, *, factory: bool = False, app_dir: str | None = None
) -> WSGIApplication:
    """Import the WSGI app named by ``target`` (``"pkg.mod:attr"`` or ``"pkg.mod"``).

    ``attr`` may be dotted (``"pkg.mod:holder.app"``); a bare module means its
    ``application`` attribute. With ``factory=True`` the attribute is called with no
    arguments and returns the app. ``app_dir`` (default: the current directory) is put
    first on ``sys.path``. Raises ``AppImportError`` with a one-line message.
    """
    module_name, attribute = _parse_target(target, DEFAULT_ATTRIBUTE)
    _put_first_on_path(app_dir)
    obj = _resolve(target, module_name, attribute)

    if factory:
        if not callable(obj):
            raise AppImportError(
                f"app factory {target!r} is not callable "
                f"(it is {_describe(obj)}); drop --factory if it is the app itself"
            )
        try:
            obj = obj()
        except (Exception, SystemExit) as exc:
            raise AppImportError(
                f"error while calling app factory {target!r}: {_exc_line(exc)}"
            ) from exc
        if not callable(obj):
            raise AppImportError(
                f"app factory {target!r} returned {_describe(obj)}, "
                "which is not a WSGI callable"
            )
    elif not callable(obj):
        raise AppImportError(f"{target!r} is not callable (it is {_describe(obj)})")

    if not _accepts_two_arguments(obj):
        hint = "" if factory else "; if it builds the app, pass --factory"
        raise AppImportError(
            f"{target!r} cannot be called as app(environ, start_response){hint}"
        )
    app: WSGIApplication = obj
    return app


def import_object(target: str) -> type[ServerHandler]:
    """Import the handler class named by ``target`` for ``--handler-class``.

    ``target`` is ``"pkg.mod:Class"`` (or ``"pkg.mod.Class"``, as
    ``pkgutil.resolve_name`` reads it). The class must be a subclass of
    ``aiogate.handlers.ServerHandler``. Raises ``AppImportError``.
    """
    # Imported here, not at the top: the handler module pulls in the thread side,
    # which importing an app does not need.
    from .server_handler import as_handler_class

    if ":" not in target and "." in target.strip("."):
        module_name, _, attribute = target.rpartition(".")
        target = f"{module_name}:{attribute}"
    module_name, attribute = _parse_target(target, None)
    obj = _resolve(target, module_name, attribute)
    try:
        return as_handler_class(obj)
    except TypeError as exc:
        raise AppImportError(f"{target!r}: {exc}") from None


def _parse_target(target: str, default_attribute: str | None) -> tuple[str, str]:
    """``"pkg.mod:a.b"`` → ``("pkg.mod", "a.b")``; ``AppImportError`` if malformed."""
    module_name, colon, attribute = target.partition(":")
    if not colon:
        attribute = default_attribute or ""
    example = "module:attribute" if default_attribute is None else "module:app"
    if not (_is_dotted_name(module_name) and _is_dotted_name(attribute)):
        raise AppImportError(
            f"malformed target {target!r}: expected {example!r} "
            "(dotted Python names, e.g. 'myproject.wsgi:application')"
        )
    return module_name, attribute


def _is_dotted_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _put_first_on_path(app_dir: str | None) -> None:
    directory = os.path.abspath(app_dir if app_dir is not None else os.curdir)
    if not sys.path or sys.path[0] != directory:
        sys.path.insert(0, directory)


def _unreadable(directory: str, top: str) -> str:
    """Why a module "not found" may be there after all: the app directory, or the
    module's file or package, is one this process may not read (a mount or a
    checkout owned by another user, after --user or a container's USER)."""
    if not os.access(directory, os.R_OK | os.X_OK):
        return (
            f"; the app directory is not readable by this process (uid "
            f"{os.geteuid()}): permission denied"
        )
    for candidate in (
        os.path.join(directory, top + ".py"),
        os.path.join(directory, top),
    ):
        if os.path.exists(candidate) and not os.access(candidate, os.R_OK):
            return (
                f"; {candidate!r} is there but not readable by this process (uid "
                f"{os.geteuid()}): permission denied"
            )
    return ""


def _resolve(target: str, module_name: str, attribute: str) -> Any:
    """Import ``module_name`` and walk the dotted ``attribute``."""
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        # The target (or one of its parent packages) is missing: say so plainly.
        # Anything else is an import *inside* the app that failed: name that module.
        if missing == module_name or module_name.startswith(missing + "."):
            raise AppImportError(
                f"could not import {module_name!r}: module {missing!r} not found "
                f"(searched the app directory {sys.path[0]!r} and sys.path)"
                + _unreadable(sys.path[0], missing.partition(".")[0])
            ) from exc
        raise AppImportError(
            f"error while importing {module_name!r}: {_exc_line(exc)}"
        ) from exc
    except (Exception, SystemExit) as exc:
        # SystemExit too: an app that checks its settings at import and calls
        # sys.exit("DATABASE_URL is not set") cannot be imported, like any other
        # failure (exit 3; in a worker, a boot error rather than a crash to restart).
        raise AppImportError(
            f"error while importing {module_name!r}: {_exc_line(exc)}"
        ) from exc

    walked = module_name
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppImportError(
                f"{walked!r} has no attribute {part!r} (looking up {target!r})"
            ) from None
        walked = (
            f"{module_name}:{part}" if walked == module_name else f"{walked}.{part}"
        )
    return obj


def _accepts_two_arguments(obj: Any) -> bool:
    """Whether ``obj(environ, start_response)`` binds; ``True`` whenever in doubt.

    Catches the common mistake of serving an app factory without ``--factory``,
    which would otherwise start fine and then fail every request. PEP 3333 asks
    only for a callable taking two positional arguments, and a wrong "no" would
    refuse a working app at startup, so only a signature that is there to read and
    plainly refuses two positional arguments counts as "no".

    The signature is the callable's own, not that of whatever it wraps: a
    ``functools.wraps`` decorator sets ``__wrapped__``, which ``inspect.signature``
    follows by default, and werkzeug's ``@Request.application`` wraps a
    ``view(request)`` in an ``application(*args)`` that is a valid WSGI app.
    """
    try:
        signature = inspect.signature(obj, follow_wrapped=False)
    except Exception:
        # Builtins and C callables may have no signature (ValueError, TypeError);
        # a __call__ or __signature__ that raises something else is no evidence
        # against the app either.
        return True
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return True


def _describe(obj: object) -> str:
    return "None" if obj is None else f"a {type(obj).__name__}"


def _exc_line(exc: BaseException) -> str:
    """``"ExcType: message"`` on one line."""
    message = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
