"""Server hooks: gunicorn's names, called at gunicorn's moments.

Owns: ``Hook`` (the closed set of hook names), ``Hooks`` (the functions a config file
or an embedding program gives, and calling them), and what the hooks receive:
``Worker`` (``worker``), ``Request`` (``req``) and ``Response`` (``resp``). The
``server`` argument is the ``supervisor.Supervisor`` with ``--workers N`` (or
``--max-requests``), else the ``server.Server`` of the single process; both have
``cfg`` (the ``Config``), ``pid`` and ``log``.

Each hook runs on the thread of the moment it marks (the table in the README,
"Server hooks"): the supervisor's and the single process's hooks on the main
thread, ``worker_int`` on the worker's event loop, ``worker_abort`` in a plain
signal handler (so that it runs even if the loop is stuck), ``pre_request`` and
``post_request`` in the app's worker thread, never on the event loop.

Failure: an exception in a hook is logged with the hook's name and the server goes
on, except in a *startup hook* (``STARTUP``: ``on_starting``, ``when_ready``,
``post_fork``, ``post_worker_init``), which raises ``HookFailed``: startup stops, the
command line exits 3. One that fails in a replacement worker, once the server has
been ready, stops that worker only (``supervisor`` rule 7).
"""

from __future__ import annotations

import enum
import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AiogateError, ConfigError

if TYPE_CHECKING:
    import h11

    from ._types import WSGIApplication
    from .config import Config

__all__ = ["STARTUP", "Hook", "HookFailed", "Hooks", "Request", "Response", "Worker"]

log = logging.getLogger("aiogate.error")


class Hook(enum.StrEnum):
    """The hooks, in the order they are first called (gunicorn's names)."""

    ON_STARTING = "on_starting"
    ON_RELOAD = "on_reload"
    WHEN_READY = "when_ready"
    PRE_FORK = "pre_fork"
    POST_FORK = "post_fork"
    POST_WORKER_INIT = "post_worker_init"
    WORKER_INT = "worker_int"
    WORKER_ABORT = "worker_abort"
    PRE_REQUEST = "pre_request"
    POST_REQUEST = "post_request"
    CHILD_EXIT = "child_exit"
    WORKER_EXIT = "worker_exit"
    NWORKERS_CHANGED = "nworkers_changed"
    ON_EXIT = "on_exit"


#: Hooks whose failure stops startup (exit 3) instead of being logged: what they
#: set up (a connection pool, tracing, a check that a dependency is there) is what
#: the server was told it needs before it serves.
STARTUP = frozenset(
    {Hook.ON_STARTING, Hook.WHEN_READY, Hook.POST_FORK, Hook.POST_WORKER_INIT}
)


#: What each hook is called with (gunicorn's arguments), checked when it is given.
ARGUMENTS: dict[Hook, tuple[str, ...]] = {
    Hook.ON_STARTING: ("server",),
    Hook.ON_RELOAD: ("server",),
    Hook.WHEN_READY: ("server",),
    Hook.PRE_FORK: ("server", "worker"),
    Hook.POST_FORK: ("server", "worker"),
    Hook.POST_WORKER_INIT: ("worker",),
    Hook.WORKER_INT: ("worker",),
    Hook.WORKER_ABORT: ("worker",),
    Hook.PRE_REQUEST: ("worker", "req"),
    Hook.POST_REQUEST: ("worker", "req", "environ", "resp"),
    Hook.CHILD_EXIT: ("server", "worker"),
    Hook.WORKER_EXIT: ("server", "worker"),
    Hook.NWORKERS_CHANGED: ("server", "new_value", "old_value"),
    Hook.ON_EXIT: ("server",),
}


def _check_callable(hook: Hook, function: object) -> None:
    """``ConfigError`` now, rather than a failure logged at every call: not a plain
    function, or one that cannot take the hook's arguments (gunicorn checks the
    count as it loads its config too)."""
    if not callable(function):
        raise ConfigError(f"hook {hook.value!r} must be a function")
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise ConfigError(
            f"hook {hook.value!r} is async: hooks are plain functions, called from "
            "the supervisor, a worker's main thread or the app's thread; use def"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without one: in doubt, take it
        return
    arguments = ARGUMENTS[hook]
    try:
        signature.bind(*arguments)
    except TypeError:
        raise ConfigError(
            f"hook {hook.value!r} is called as {hook.value}({', '.join(arguments)}); "
            f"{getattr(function, '__name__', 'it')}{signature} cannot take that"
        ) from None


class HookFailed(AiogateError):
    """A startup hook raised: the message names the hook and the exception."""


@dataclass(slots=True, eq=False)
class Worker:
    """What a hook gets as ``worker`` (gunicorn's worker object, its useful part).

    ``pid`` is 0 in ``pre_fork`` (the process does not exist yet); ``age`` counts
    the workers the supervisor has started (1 for the first); ``wsgi`` is the app
    once loaded (``post_worker_init`` on), else None."""

    cfg: Config
    age: int
    pid: int = 0
    ppid: int = 0
    wsgi: WSGIApplication | None = None
    booted_at: float = field(default_factory=time.time)
    log: logging.Logger = log

    def set_current(self) -> None:
        """This process is the worker: fill in its ids (after ``fork``)."""
        self.pid, self.ppid, self.booted_at = os.getpid(), os.getppid(), time.time()


@dataclass(frozen=True, slots=True)
class Request:
    """``req`` of ``pre_request``/``post_request``: the request line and head as
    received (headers keep the client's order; names lower-case, as h11 gives)."""

    method: str
    uri: str
    path: str
    query: str
    version: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_h11(cls, request: h11.Request) -> Request:
        uri = request.target.decode("latin-1")
        path, _, query = uri.partition("?")
        return cls(
            method=request.method.decode("latin-1"),
            uri=uri,
            path=path,
            query=query,
            version=request.http_version.decode("latin-1"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.headers
            ),
        )


@dataclass(frozen=True, slots=True)
class Response:
    """``resp`` of ``post_request``: the status line the app gave (``""`` if it gave
    none), its headers, and the body bytes it produced."""

    status: str
    headers: tuple[tuple[str, str], ...]
    sent: int

    @property
    def status_code(self) -> int:
        code = self.status.partition(" ")[0]
        return int(code) if code.isdigit() else 0


class Hooks:
    """The hook functions, by name; calling one that is not given does nothing.

    ``Hooks({"post_fork": post_fork})``, or ``Hooks(on_starting=...)``; a name that
    is not a hook, or a value that is not callable, is a ``ConfigError``."""

    __slots__ = ("_functions",)

    def __init__(
        self, functions: Mapping[str, Callable[..., object]] | None = None, **more: Any
    ) -> None:
        self._functions: dict[Hook, Callable[..., object]] = {}
        for name, function in {**(functions or {}), **more}.items():
            try:
                hook = Hook(name)
            except ValueError:
                raise ConfigError(f"{name!r} is not a server hook") from None
            _check_callable(hook, function)
            self._functions[hook] = function

    def __contains__(self, hook: Hook) -> bool:
        return hook in self._functions

    def __bool__(self) -> bool:
        return bool(self._functions)

    def names(self) -> list[str]:
        return [hook.value for hook in Hook if hook in self._functions]

    def call(self, hook: Hook, *args: object) -> None:
        """Call ``hook`` if given. Its exception is logged with its name; from a
        startup hook it is raised as ``HookFailed`` instead."""
        function = self._functions.get(hook)
        if function is None:
            return
        try:
            function(*args)
        except Exception as exc:
            if hook in STARTUP:
                raise HookFailed(
                    f"hook {hook.value} failed: {type(exc).__name__}: {exc}"
                ) from exc
            log.exception("Hook %s failed", hook.value)

    # -- the request path (runs in the app's worker thread) -------------------------

    def run_request(
        self, worker: Worker, handler: Any, app: WSGIApplication, request: h11.Request
    ) -> None:
        """``pre_request``, the app (``handler.run``), then ``post_request`` once the
        response has ended or failed. Runs in a worker thread."""
        req = Request.from_h11(request)
        self.call(Hook.PRE_REQUEST, worker, req)
        if Hook.POST_REQUEST not in self._functions:
            handler.run(app)
            return
        # wsgiref's close() forgets the environ, status and headers: keep them for
        # post_request as they are when the response ends (an instance attribute
        # over the method: the handler's wsgiref state lives in its __dict__).
        kept: list[tuple[Any, Response]] = []
        close = handler.close

        def close_and_keep() -> None:
            kept.append((handler.environ, _response_of(handler)))
            close()

        handler.close = close_and_keep
        try:
            handler.run(app)
        finally:
            environ, resp = (
                kept[0] if kept else (handler.environ, _response_of(handler))
            )
            self.call(Hook.POST_REQUEST, worker, req, environ or {}, resp)


def _response_of(handler: Any) -> Response:
    headers = handler.headers
    return Response(
        status=str(handler.status or ""),
        headers=tuple(headers.items()) if headers is not None else (),
        sent=int(handler.bytes_sent or 0),
    )
