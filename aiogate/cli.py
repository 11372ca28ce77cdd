"""The ``aiogate`` command: ``serve``, ``cgi`` and ``--version``.

Owns: the argument parser, whose ``serve`` options are derived from the ``Config``
fields (one ``--flag`` and one ``AIOGATE_*`` variable per field; nothing is repeated
here), the startup order, and the mapping of errors to exit codes. Runs in the main
thread. It is the only module that turns exceptions into exit codes:

- ``0``: the server stopped cleanly (or the CGI request was handled);
- ``2``: a usage error: an unknown flag, a bad value in a flag, in an ``AIOGATE_*``
  variable or in the resulting ``Config`` (argparse's own code for usage errors);
- ``3``: startup failed: the app (or the handler class) could not be imported, or the
  server could not start (uvicorn's ``STARTUP_FAILURE``).

Startup order: parse → ``Config(...)`` → ``configure_logging`` → import the app and the
handler class (fail fast, before any socket is bound) → ``server.run(app, config)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from ._version import __version__
from .config import Config, option_fields
from .config_file import load_file_settings, toml_value
from .errors import AiogateError, AppImportError, ConfigError
from .importer import import_app, import_object
from .logs import configure_logging

__all__ = ["ENV_PREFIX", "build_parser", "main", "usage_table_markdown"]

ENV_PREFIX = "AIOGATE_"
EXIT_OK = 0
EXIT_USAGE = 2  # argparse exits with 2 on a usage error; ours match it
EXIT_STARTUP_FAILURE = 3  # uvicorn's STARTUP_FAILURE

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Option:
    """One command-line option and its environment variable."""

    #: The attribute name in the parsed namespace (a ``Config`` field name for those).
    dest: str
    flag: str
    envvar: str
    help: str
    #: The value when neither the flag nor the variable is given.
    default: Any
    #: Converts a flag's or variable's text; raises ``ValueError``/``TypeError``.
    parse: Callable[[str], Any]
    choices: tuple[str, ...] | None = None
    is_bool: bool = False
    #: A ``Config`` field (as opposed to an option of the command line only).
    is_config: bool = True
    metavar: str | None = None
    #: A list (``tuple[str, ...]`` field): the flag may be repeated, the variable
    #: separates items with spaces or commas, the settings file takes a TOML array.
    repeatable: bool = False


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}, not {text!r}")


def _option_for_field(field: dataclasses.Field[Any], annotation: Any) -> Option:
    """Derive the option of one ``Config`` field from its type, default and help."""
    dest = field.name
    help_text = str(field.metadata.get("help", ""))
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        raise TypeError(f"Config.{dest} needs a default to be a command-line option")
    common: dict[str, Any] = {
        "dest": dest,
        "flag": "--" + dest.replace("_", "-"),
        "envvar": ENV_PREFIX + dest.upper(),
        "help": help_text,
        "default": default,
    }
    if annotation is bool:
        return Option(**common, parse=_parse_bool, is_bool=True)
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        if not all(isinstance(choice, str) for choice in choices):
            raise TypeError(f"Config.{dest}: only Literal[str, ...] is supported")
        return Option(**common, parse=str, choices=tuple(choices))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        # "X | None", "str | type | None": the command line can only give text, so a
        # union with str takes the text as it is (a class path, for instance).
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = (
            str if str in members else members[0] if len(members) == 1 else None
        )
    if typing.get_origin(annotation) is tuple and typing.get_args(annotation) == (
        str,
        ...,
    ):
        return Option(**common, parse=_parse_list, repeatable=True)
    if annotation in (int, float, str):
        parse: Callable[[str], Any] = annotation
        return Option(**common, parse=parse)
    raise TypeError(f"Config.{dest}: no command-line option for type {annotation!r}")


@cache
def config_options() -> tuple[Option, ...]:
    """The ``serve`` options derived from the ``Config`` fields, in field order."""
    hints = typing.get_type_hints(Config)
    return tuple(_option_for_field(f, hints[f.name]) for f in option_fields())


def app_options() -> tuple[Option, ...]:
    """The options that are not settings of the server but say how to find the app."""
    return (
        Option(
            dest="target",
            flag="TARGET",
            envvar=ENV_PREFIX + "APP",
            help="The WSGI app, as module:attribute (attribute defaults to "
            "'application').",
            default=None,
            parse=str,
            is_config=False,
        ),
        Option(
            dest="factory",
            flag="--factory",
            envvar=ENV_PREFIX + "FACTORY",
            help="TARGET is a factory: call it with no arguments to get the app.",
            default=False,
            parse=_parse_bool,
            is_bool=True,
            is_config=False,
        ),
        Option(
            dest="app_dir",
            flag="--app-dir",
            envvar=ENV_PREFIX + "APP_DIR",
            help="Directory put first on sys.path to import TARGET from.",
            default=".",
            parse=str,
            is_config=False,
            metavar="DIR",
        ),
        Option(
            dest="config",
            flag="--config",
            envvar=ENV_PREFIX + "CONFIG",
            help="A TOML file of settings (its [tool.aiogate] table, or its top "
            "level). Without it, [tool.aiogate] of ./pyproject.toml is read if present. "
            "Flags and AIOGATE_* variables win over the file.",
            default=None,
            parse=str,
            is_config=False,
            metavar="FILE",
        ),
    )


def _show_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == ():
        return "none"
    if value == "":
        return '""'
    return str(value)


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    help_text = (
        f"{option.help} (default: {_show_default(option.default)}; "
        f"env: {option.envvar})"
    ).replace("%", "%%")
    if option.flag == "TARGET":
        parser.add_argument(
            "target", nargs="?", metavar="TARGET", default=None, help=help_text
        )
    elif option.is_bool:
        parser.add_argument(
            option.flag,
            dest=option.dest,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    elif option.repeatable:  # one item per flag; _value makes the list a tuple
        parser.add_argument(
            option.flag,
            dest=option.dest,
            action="append",
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    else:
        parser.add_argument(
            option.flag,
            dest=option.dest,
            type=option.parse,
            choices=option.choices,
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=help_text,
        )


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


def build_parser() -> argparse.ArgumentParser:
    """The ``aiogate`` parser with its ``serve`` and ``cgi`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="aiogate",
        description="An asyncio HTTP/1.1 origin server for WSGI apps.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="Serve a WSGI app over HTTP/1.1.",
        description="Serve a WSGI app over HTTP/1.1 until SIGINT or SIGTERM. Every "
        f"option can also be set with its {ENV_PREFIX}* environment variable; a flag "
        "wins over a variable, a variable over the default.",
    )
    for option in app_options():
        _add_option(serve, option)
    for option in config_options():
        _add_option(serve, option)
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
    serve.set_defaults(run_command=_serve, command_parser=serve)

    cgi = commands.add_parser(
        "cgi",
        help="Run a WSGI app once, as a CGI script.",
        description="Run a WSGI app once as a CGI script: the request comes from the "
        "CGI environment variables and stdin, the response goes to stdout.",
    )
    for option in app_options():
        _add_option(cgi, option)
    cgi.set_defaults(run_command=_cgi, command_parser=cgi)
    return parser


class _UsageError(Exception):
    """A bad value found after argparse is done (environment, missing TARGET)."""


def _file_key(option: Option) -> str:
    """The option's key in a settings file: its name, ``app`` for the target."""
    return "app" if option.dest == "target" else option.dest


def _source(args: argparse.Namespace, option: Option) -> str:
    """Where the option's value comes from: flag, env, file or default."""
    if option.flag == "TARGET":
        if args.target is not None:
            return "flag"
    elif hasattr(args, option.dest):
        return "flag"
    if option.envvar in os.environ:
        return "env"
    if _file_key(option) in getattr(args, "file_settings", {}):
        return "file"
    return "default"


def _from_file(args: argparse.Namespace, option: Option) -> Any:
    """A file's value for ``option``, checked against the option's type."""
    value = args.file_settings[_file_key(option)]
    where = f"{args.file_source}: {_file_key(option)} = {value!r}"
    if option.repeatable:  # an array of strings, or one string as in the variable
        if isinstance(value, str):
            value = option.parse(value)
        valid = isinstance(value, list | tuple) and all(
            isinstance(item, str) for item in value
        )
        value = tuple(value) if valid else value
    elif option.is_bool:
        valid = isinstance(value, bool)
    elif option.parse is int:
        valid = isinstance(value, int) and not isinstance(value, bool)
    elif option.parse is float:
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if valid else value
    elif option.parse is str:
        valid = isinstance(value, str)
    else:  # an option with its own parser takes the text (a list: joined by commas)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = ",".join(value)
        valid = isinstance(value, str)
        if valid:
            try:
                value = option.parse(value)
            except (TypeError, ValueError) as exc:
                raise _UsageError(f"{where}: {exc}") from None
    if not valid:
        raise _UsageError(f"{where}: expected {_type_name(option)}")
    if option.choices is not None and value not in option.choices:
        raise _UsageError(f"{where}: expected one of {', '.join(option.choices)}")
    return value


def _type_name(option: Option) -> str:
    if option.repeatable:
        return "an array of strings"
    if option.is_bool:
        return "true or false"
    if option.parse is int:
        return "an integer"
    return "a number" if option.parse is float else "a string"


def _value(args: argparse.Namespace, option: Option) -> Any:
    """Flag > ``AIOGATE_*`` variable > settings file > default; ``_UsageError`` for a
    bad variable or file value."""
    if option.flag == "TARGET":
        if args.target is not None:
            return args.target
    elif hasattr(args, option.dest):
        value = getattr(args, option.dest)
        return tuple(value) if option.repeatable else value
    text = os.environ.get(option.envvar)
    if text is None:
        if _file_key(option) in getattr(args, "file_settings", {}):
            return _from_file(args, option)
        return option.default
    try:
        value = option.parse(text)
    except (TypeError, ValueError) as exc:
        raise _UsageError(
            f"environment variable {option.envvar}={text!r}: {exc}"
        ) from None
    if option.choices is not None and value not in option.choices:
        raise _UsageError(
            f"environment variable {option.envvar}={text!r}: "
            f"expected one of {', '.join(option.choices)}"
        )
    return value


def _read_settings_file(args: argparse.Namespace) -> None:
    """Load ``--config`` or ``[tool.aiogate]`` into ``args`` (``file_settings``,
    ``file_source``); unknown keys are a usage error."""
    config_option = next(o for o in app_options() if o.dest == "config")
    try:
        settings, source = load_file_settings(_value(args, config_option), Path.cwd())
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    known = {_file_key(o) for o in (*app_options(), *config_options())} - {"config"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise _UsageError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    args.file_settings, args.file_source = settings, source


def _app_source(args: argparse.Namespace) -> tuple[str, bool, str]:
    """(target, factory, app_dir) from the flags, the environment and the file."""
    target, factory, app_dir = (
        _value(args, option) for option in app_options() if option.dest != "config"
    )
    if not target:
        raise _UsageError(f"no app given: pass TARGET or set {ENV_PREFIX}APP")
    return target, factory, app_dir


def _error(message: object, code: int) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return code


def _print_config(args: argparse.Namespace) -> int:
    """``--print-config``: every setting in effect, as a ``[tool.aiogate]`` table."""
    source = args.file_source or "no settings file"
    print(f"# aiogate {__version__}: flag > AIOGATE_* variable > {source} > default")
    print("[tool.aiogate]")
    for option in (*app_options(), *config_options()):
        if option.dest == "config":
            continue
        value = _value(args, option)
        key, origin = _file_key(option), _source(args, option)
        if value is None:
            print(f"# {key} = (unset)  # {origin}")
        else:
            print(f"{key} = {toml_value(value)}  # {origin}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    _read_settings_file(args)
    if args.print_config:
        return _print_config(args)
    target, factory, app_dir = _app_source(args)
    settings = {
        option.dest: _value(args, option)
        for option in config_options()
        if _source(args, option) != "default"
    }
    if "workers" not in settings and os.environ.get("WEB_CONCURRENCY"):
        # The platforms' variable (Heroku, Render ...), as gunicorn and uvicorn read it.
        try:
            settings["workers"] = int(os.environ["WEB_CONCURRENCY"])
        except ValueError:
            raise _UsageError(
                f"WEB_CONCURRENCY={os.environ['WEB_CONCURRENCY']!r} is not a number"
            ) from None
    try:
        config = Config(**settings)
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    try:
        configure_logging(config.log_level, config.log_config)
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
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

    try:
        app = import_app(target, factory=factory, app_dir=app_dir)
        if isinstance(config.handler_class, str):
            config = dataclasses.replace(
                config, handler_class=import_object(config.handler_class)
            )
    except AppImportError as exc:
        return _error(exc, EXIT_STARTUP_FAILURE)

    # Imported here, not at the top: it is the heaviest import (the loop side), and
    # tests replace ``aiogate.server.run`` with a fake.
    from . import server

    if args.check_config:
        try:
            server.Server(app, config)  # checks TLS files, trust list, log format
        except ConfigError as exc:
            return _error(exc, EXIT_USAGE)
        print(f"Configuration OK: {target} with {len(settings)} setting(s) changed")
        return EXIT_OK
    # What is imported by now (the app, its framework, aiogate) lives as long as the
    # process: out of the collector's sight, a full collection walks only what
    # connections and requests create, rather than stalling the loop for tens of
    # milliseconds over every module's objects; forked workers also keep those
    # pages shared. gunicorn's docs recommend the same for preloaded apps.
    gc.freeze()
    try:
        if config.workers > 1 or config.max_requests:
            return _supervise(app, config)
        server.run(app, config)
    except ConfigError as exc:
        return _error(exc, EXIT_USAGE)
    except (AiogateError, OSError) as exc:  # e.g. the address is in use
        return _error(exc, EXIT_STARTUP_FAILURE)
    return EXIT_OK


def _supervise(app: Any, config: Config) -> int:
    """Bind once, then run the server in supervised worker processes."""
    from . import server
    from .sockets import bind_sockets
    from .supervisor import Supervisor

    # Checked once here, like --check-config does: a bad TLS file or trust list is
    # a usage error now, not a worker that fails to start (exit 3, see supervisor).
    server.Server(app, config)
    server.loop_factory(config.loop)
    sockets = bind_sockets(config)
    return Supervisor(
        config,
        sockets,
        lambda inherited, retiring: server.run(
            app, config, sockets=inherited, on_max_requests=retiring
        ),
    ).run()


def _cgi(args: argparse.Namespace) -> int:
    _read_settings_file(args)
    target, factory, app_dir = _app_source(args)
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)
    command: Callable[[argparse.Namespace], int] = args.run_command
    try:
        return command(args)
    except _UsageError as exc:
        command_parser: argparse.ArgumentParser = args.command_parser
        command_parser.print_usage(sys.stderr)
        print(f"{command_parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def usage_table_markdown() -> str:
    """The option reference of ``aiogate serve`` as a markdown table, for the README."""
    rows = [
        "| Option | Environment variable | Default | Description |",
        "|---|---|---|---|",
    ]
    for option in (*app_options(), *config_options()):
        if option.is_bool:
            flag = f"`{option.flag}` / `--no-{option.flag[2:]}`"
        elif option.flag == "TARGET":
            flag = "`TARGET` (positional)"
        else:
            flag = f"`{option.flag} {option.metavar or option.dest.upper()}`"
        help_text = option.help
        if option.choices:
            help_text += " One of: " + ", ".join(f"`{c}`" for c in option.choices) + "."
        default = _show_default(option.default)
        default = "unset" if option.default is None else f"`{default}`"
        rows.append(
            f"| {flag} | `{option.envvar}` | {_markdown_cell(default)} "
            f"| {_markdown_cell(help_text)} |"
        )
    return "\n".join(rows) + "\n"
