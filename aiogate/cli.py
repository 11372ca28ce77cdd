"""The ``aiogate`` command: ``serve``, ``cgi``, ``check`` and ``--version``.

Owns: the parser's commands (its options, derived from the ``Config`` fields, and the
value of each are ``options.py``'s), the startup order, ``--print-config`` and
``--check-config``, supervised workers, and the mapping of errors to exit codes. Runs
in the main thread, before any event loop exists (``server.run`` starts one last). It
is the only module that turns exceptions into exit codes:

- ``0``: the server stopped cleanly (or the CGI request was handled);
- ``1``: a second SIGINT or SIGTERM stopped the server at once, cutting requests in
  flight (``server.py``, ``supervisor.py``);
- ``2``: a usage error: an unknown flag, a bad value in a flag, in an ``AIOGATE_*``
  variable, in the ``--env-file`` or in the resulting ``Config``, a peer's flag that
  aiogate refuses (argparse's own code for usage errors), or a ``--user``/``--group``
  this process cannot switch to;
- ``3``: startup failed: the app (or the handler class) could not be imported, a
  startup hook raised (``hooks.STARTUP``), the ``--pid`` file names another running
  process, or the server could not start (uvicorn's ``STARTUP_FAILURE``); also the
  supervisor's code when a worker could not start serving (a worker's own code, 4,
  never reaches the command line);
- ``5``: an address could not be listened on (in use, privileged, not on this host):
  ``cannot listen on 127.0.0.1:8000: address already in use``.

``aiogate check`` has its own codes (``healthcheck.py``: 0 healthy, 1 not).

Startup order: parse (gunicorn's and uvicorn's spellings too, ``peer_flags.py``; and
run a ``-c FILE.py``) → settings file → ``--env-file`` into the environment →
``Config(...)`` (from flags and ``AIOGATE_*`` variables) → ``--umask`` →
``--chdir``/``--pythonpath``/``-e`` → ``configure_logging`` (and the log files) →
resolve ``--user``/``--group`` → import the app and the handler class (fail fast,
before any socket is bound) → bind → write the ``--pid`` file → drop privileges (in
each worker with ``--workers``) → serve, telling systemd when ready
(``NOTIFY_SOCKET``) → remove the pid file at exit. With workers and no ``--preload``
the app is imported in each worker after forking (and after dropping privileges)
instead (``supervisor`` rules 1 and 7: an app that cannot be imported still exits 3,
once).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import platform
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ._version import __version__
from .config import Config
from .config_file import toml_value
from .env_file import EnvFileError, load_env_file
from .errors import AiogateError, AppImportError, BindError, ConfigError
from .healthcheck import add_check_command
from .hooks import Hook, Hooks, Worker
from .importer import import_app, import_object
from .logs import configure_logging
from .options import (
    ENV_PREFIX,
    UsageError,
    add_option,
    app_options,
    app_source,
    config_options,
    file_key,
    option_source,
    option_value,
    read_settings_file,
    usage_table_markdown,
)
from .peer_flags import (
    add_peer_flags,
    bare_switches,
    notes,
    prepare_process,
    warnings,
)
from .pidfile import PidFile
from .privileges import (
    Identity,
    apply_umask,
    chown_socket_files,
    drop_privileges,
    resolve_identity,
)
from .systemd import Notifier

if TYPE_CHECKING:
    import socket

# The option names stay importable from here, where tests, docs/update_readme.py and
# earlier code import them.
__all__ = [
    "ENV_PREFIX",
    "app_options",
    "build_parser",
    "config_options",
    "main",
    "usage_table_markdown",
]

EXIT_OK = 0
EXIT_USAGE = 2  # argparse exits with 2 on a usage error; ours match it
EXIT_STARTUP_FAILURE = 3  # uvicorn's STARTUP_FAILURE
EXIT_BIND_FAILURE = 5  # an address that cannot be listened on (sockets.BindError)

log = logging.getLogger("aiogate.error")


def version_text() -> str:
    """``aiogate 0.1.0 (h11 0.16.0, uvloop 0.21.0; CPython 3.11.7 on Linux)``."""
    from importlib import metadata  # here: it costs 1.7 MiB of RSS to import

    parts = []
    for name in ("h11", "uvloop"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} not installed")
    runtime = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"aiogate {__version__} ({', '.join(parts)}; {runtime} on {platform.system()})"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line and a hint, not the usage of
    sixty options before the line that matters (subcommands get this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, usage_error(self.prog, message))


def usage_error(prog: str, message: object) -> str:
    """What a usage error prints: one line, then where the options are."""
    return f"{prog}: error: {message}\nRun '{prog} --help' for the options.\n"


def build_parser() -> argparse.ArgumentParser:
    """The ``aiogate`` parser with its ``serve``, ``cgi`` and ``check`` subcommands."""
    parser = _Parser(
        prog="aiogate",
        description="An asyncio HTTP/1.1 origin server for WSGI apps.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="Serve a WSGI app over HTTP/1.1.",
        description="Serve a WSGI app over HTTP/1.1 until SIGINT or SIGTERM. Every "
        f"option can also be set with its {ENV_PREFIX}* environment variable or in a "
        "settings file; a flag wins over a variable, a variable over the file, the "
        "file over the default.",
        epilog="gunicorn's and uvicorn's spellings (-b, -w, -t, --keep-alive, "
        "--access-logfile, --certfile ...) work too: see 'Coming from gunicorn or "
        "uvicorn' in the README.",
    )
    for option in app_options():
        add_option(serve, option)
    for option in config_options():
        add_option(serve, option)
    checks = serve.add_mutually_exclusive_group()
    checks.add_argument(
        "--print-config",
        action="store_true",
        help="Print the settings in effect (as TOML, with where each came from) and "
        "exit.",
    )
    checks.add_argument(
        "--check-config",
        action="store_true",
        help="Check the settings, import the app and load the TLS files, then exit: "
        "0 if all is well, 2 for a bad setting, 3 if the app cannot be imported.",
    )
    # (as gunicorn's and uvicorn's own --version, after the subcommand too)
    serve.add_argument("--version", action="version", version=version_text())
    add_peer_flags(serve)  # after aiogate's own: those keep their meaning
    serve.set_defaults(run_command=_serve, command_parser=serve)

    cgi = commands.add_parser(
        "cgi",
        help="Run a WSGI app once, as a CGI script.",
        description="Run a WSGI app once as a CGI script: the request comes from the "
        "CGI environment variables and stdin, the response goes to stdout.",
    )
    for option in app_options():
        add_option(cgi, option)
    cgi.set_defaults(run_command=_cgi, command_parser=cgi)
    add_check_command(commands)  # healthcheck.py: a container's health probe
    return parser


def _error(message: object, code: int) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return code


def _print_config(args: argparse.Namespace) -> int:
    """``--print-config``: every setting in effect, as a ``[tool.aiogate]`` table."""
    source = args.file_source or "no settings file"
    print(f"# aiogate {__version__}: flag > AIOGATE_* variable > {source} > default")
    hooks: Hooks = args.hooks
    if hooks:
        print(f"# hooks from {source}: {', '.join(hooks.names())}")
    print("[tool.aiogate]")
    for option in (*app_options(), *config_options()):
        if option.dest == "config":
            continue
        value = option_value(args, option)
        key, origin = file_key(option), option_source(args, option)
        if value is None:
            print(f"# {key} = (unset)  # {origin}")
        elif option.dest in SECRETS:
            # Printed configs end up in CI logs and tickets: say it is set, not what.
            print(f'{key} = "(redacted)"  # {origin}')
        else:
            print(f"{key} = {toml_value(value)}  # {origin}")
    # Then the checks that need no import: what serve would refuse, said here too
    # (the settings are printed first, so the one at fault can be found among them).
    try:
        Config(**_given(args))
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    return EXIT_OK


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given by a flag, a variable or the file (not left at default)."""
    return {
        option.dest: option_value(args, option)
        for option in config_options()
        if option_source(args, option) != "default"
    }


#: Settings whose values --print-config does not show.
SECRETS = frozenset({"ssl_keyfile_password"})


def _load_env_file(args: argparse.Namespace) -> None:
    """``--env-file``: into the environment before any ``AIOGATE_*`` value is read
    (``--config``/``AIOGATE_CONFIG`` excepted: the settings file may name it)."""
    option = next(o for o in config_options() if o.dest == "env_file")
    path = option_value(args, option)
    if path:
        load_env_file(path)


def _serve(args: argparse.Namespace) -> int:
    read_settings_file(args)
    try:
        _load_env_file(args)
    except EnvFileError as exc:
        return _error(exc, EXIT_USAGE)
    if args.print_config:
        for text in warnings(args):
            print(f"{args.command_parser.prog}: warning: {text}", file=sys.stderr)
        return _print_config(args)
    target, factory, app_dir = app_source(args)
    settings = _given(args)
    if "workers" not in settings and os.environ.get("WEB_CONCURRENCY"):
        # The platforms' variable (Heroku, Render ...), as gunicorn and uvicorn read it.
        try:
            settings["workers"] = int(os.environ["WEB_CONCURRENCY"])
        except ValueError:
            raise UsageError(
                f"WEB_CONCURRENCY={os.environ['WEB_CONCURRENCY']!r} is not a number"
            ) from None
    try:
        config = Config(**settings)
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    apply_umask(config.umask)
    try:
        prepare_process(args)
    except OSError as exc:
        return _error(f"--chdir {exc.filename}: {exc.strerror}", EXIT_USAGE)
    try:
        configure_logging(
            config.log_level,
            config.log_config,
            config.access_log_file,
            config.error_log_file,
        )
        identity = resolve_identity(config.user, config.group)
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    for text in warnings(args):
        log.warning("%s", text)
    for text in notes(args):
        log.info("%s", text)
    if config.reload and not args.check_config:
        # The watcher never imports the app; each child process does.
        from .reloader import run_with_reload

        argv: list[str] = args.argv
        try:
            return run_with_reload(
                argv[argv.index("serve") + 1 :],
                config.reload_dirs,
                config.reload_include,
                config.reload_exclude,
                app_dir,
            )
        except ConfigError as exc:
            return _error(exc, EXIT_USAGE)

    # Until the supervisor or the server installs its own: a SIGHUP (a deploy's
    # reload) that comes while the app is still being imported would otherwise end
    # the process, its default. Nothing is loaded yet, so there is nothing to reload.
    signal.signal(signal.SIGHUP, _hangup_while_starting)
    hooks: Hooks = args.hooks
    notifier = Notifier()
    supervised = config.workers > 1 or config.max_requests > 0
    if supervised and not config.preload and not args.check_config:
        # Each worker imports the app after forking (supervisor rule 1).
        return _supervise(
            lambda: _load(target, factory, app_dir, config),
            config,
            hooks,
            identity,
            notifier,
        )
    try:
        app, config = _load(target, factory, app_dir, config)
    except AppImportError as exc:
        return _error(exc, EXIT_STARTUP_FAILURE)

    # Imported here, not at the top: it is the heaviest import (the loop side), and
    # tests replace ``aiogate.server.run`` with a fake.
    from . import server

    if args.check_config:
        return _check_config(app, config, app_dir, f"{target} with {len(settings)}")
    # What is imported by now (the app, its framework, aiogate) lives as long as the
    # process: out of the collector's sight, a full collection walks only what
    # connections and requests create, rather than stalling the loop for tens of
    # milliseconds over every module's objects; forked workers also keep those
    # pages shared. gunicorn's docs recommend the same for preloaded apps.
    gc.freeze()
    if supervised:
        preloaded = app, config
        return _supervise(lambda: preloaded, config, hooks, identity, notifier)
    try:
        if config.pid or identity or notifier.enabled:
            return _serve_managed(app, config, hooks, identity, notifier)
        server.run(app, config, hooks=hooks)
    except (AiogateError, OSError) as exc:
        return _startup_error(exc)
    return EXIT_OK


def _hangup_while_starting(signum: int, frame: object) -> None:
    log.info("SIGHUP while starting: nothing to reload yet; ignored")


def _startup_error(exc: AiogateError | OSError) -> int:
    """Say a failure to start serving in one line; its exit code: 2 for a bad
    setting, 5 for an address that cannot be listened on, else 3."""
    if isinstance(exc, ConfigError):
        return _error(exc, EXIT_USAGE)
    if isinstance(exc, BindError):  # (an OSError too: asked first)
        return _error(exc, EXIT_BIND_FAILURE)
    return _error(exc, EXIT_STARTUP_FAILURE)


def _check_config(app: Any, config: Config, app_dir: str, what: str) -> int:
    """``--check-config``, the app imported: every check ``serve`` makes before it
    binds, in the same words, and nothing bound."""
    from . import server
    from .sockets import check_binds

    try:
        server.Server(app, config)  # checks TLS files, trust list, log format
        server.loop_factory(config.loop)  # uvloop asked for and not installed
        check_binds(config)  # host lists, names, descriptors, socket paths
        if config.reload:
            from .reloader import check_reload

            check_reload(config.reload_dirs, app_dir)
        if config.pid:
            PidFile(config.pid).check()  # another server's, or nowhere to write it
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    except AiogateError as exc:
        return _startup_error(exc)
    print(f"Configuration OK: {what} setting(s) changed")
    return EXIT_OK


def _load(
    target: str, factory: bool, app_dir: str, config: Config
) -> tuple[Any, Config]:
    """Import the app and the handler class; ``AppImportError`` if either fails."""
    app = import_app(target, factory=factory, app_dir=app_dir)
    if isinstance(config.handler_class, str):
        config = dataclasses.replace(
            config, handler_class=import_object(config.handler_class)
        )
    return app, config


@contextlib.contextmanager
def _listening(
    config: Config, identity: Identity | None
) -> Iterator[tuple[list[socket.socket], Callable[[], None]]]:
    """The sockets bound, with the pid file written after binding and the UNIX socket
    files given to ``--user``; yields them and ``clean_up`` (removes those files, at
    the end or before a forced exit, where no ``finally`` runs)."""
    from .sockets import bind_sockets, remove_socket_files, socket_files

    pid_file = PidFile(config.pid) if config.pid else None
    if pid_file is not None:
        pid_file.check()
    sockets = bind_sockets(config)
    files = socket_files(config, sockets)

    def clean_up() -> None:
        remove_socket_files(files)
        if pid_file is not None:
            pid_file.remove()

    try:
        if pid_file is not None:
            pid_file.write()
        if identity is not None:
            chown_socket_files(files, identity)
        yield sockets, clean_up
    finally:
        clean_up()


def _serve_managed(
    app: Any,
    config: Config,
    hooks: Hooks,
    identity: Identity | None,
    notifier: Notifier,
) -> int:
    """One server, bound here so that the pid file is written and privileges are
    dropped between binding and serving (see ``pidfile`` and ``privileges``)."""
    from . import server

    with _listening(config, identity) as (sockets, clean_up):
        if identity is not None:
            drop_privileges(identity)
        server.run(
            app,
            config,
            sockets=sockets,
            on_ready=notifier.ready,
            on_stopping=notifier.stopping,
            on_forced_exit=clean_up,  # a second signal: no finally runs
            hooks=hooks,
        )
    return EXIT_OK


def _supervise(
    load: Callable[[], tuple[Any, Config]],
    config: Config,
    hooks: Hooks,
    identity: Identity | None,
    notifier: Notifier,
) -> int:
    """Bind once, then run the server in supervised worker processes, which get
    the app from ``load`` (the one preloaded, or imported there and then)."""
    from . import server
    from .supervisor import News, Supervisor

    try:
        # Checked once here, like --check-config does: a bad TLS file or trust
        # list is a usage error now, not a worker that fails to start (exit 3, see
        # supervisor). The handler class is the workers' to import, with the app.
        checked = config
        if isinstance(config.handler_class, str):
            checked = dataclasses.replace(config, handler_class=None)
        server.Server(_no_app, checked)
        server.loop_factory(config.loop)
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)

    def serve(
        inherited: list[Any], worker: Worker, tell: Callable[[News], None]
    ) -> None:
        if identity is not None:  # the supervisor stays root (privileges rule 2)
            drop_privileges(identity)
        app, worker_config = load()  # AppImportError: a worker boot error
        gc.freeze()  # as _serve does, for what the worker has imported
        server.run(
            app,
            worker_config,
            sockets=inherited,
            on_max_requests=lambda: tell(News.RETIRING),
            on_ready=lambda: tell(News.READY),
            hooks=hooks,
            worker=worker,
        )

    supervisor = Supervisor(
        config, [], serve, hooks, notifier if notifier.enabled else None
    )
    try:
        hooks.call(Hook.ON_STARTING, supervisor)
        with _listening(config, identity) as (sockets, _):
            supervisor.sockets = sockets
            return supervisor.run()
    except (AiogateError, OSError) as exc:  # the pid file, a bind (run says its own)
        return _startup_error(exc)


def _no_app(environ: Any, start_response: Any) -> Any:
    """Stands for the app in the supervisor's check of the settings, when the
    workers import the app (it is never called)."""
    raise RuntimeError("not an app")  # pragma: no cover


def _cgi(args: argparse.Namespace) -> int:
    read_settings_file(args)
    target, factory, app_dir = app_source(args)
    try:
        app = import_app(target, factory=factory, app_dir=app_dir)
    except AppImportError as exc:
        return _error(exc, EXIT_STARTUP_FAILURE)
    from .handlers import CGIHandler

    CGIHandler().run(app)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aiogate`` command and return its exit code.

    The console script and ``python -m aiogate`` pass the code to ``sys.exit``.
    """
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(
            bare_switches(given) if given[:1] == ["serve"] else given
        )
        if extra:  # said by the command's parser, whose --help lists its options
            args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = given
    command: Callable[[argparse.Namespace], int] = args.run_command
    try:
        return command(args)
    except UsageError as exc:
        command_parser: argparse.ArgumentParser = args.command_parser
        sys.stderr.write(usage_error(command_parser.prog, exc))
        return EXIT_USAGE
