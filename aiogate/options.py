"""The options of the ``aiogate`` command, and where each value comes from.

Owns: the ``Option`` record; the ``serve`` options derived from the ``Config`` fields
(one ``--flag`` and one ``AIOGATE_*`` variable per field, from its type, default and
help metadata; nothing is repeated here) and the app options (``TARGET``,
``--factory``, ``--app-dir``, ``--config``); parsing their text; adding one to an
argparse parser; resolving each value (flag > ``AIOGATE_*`` variable > settings file >
default, with ``UsageError`` for a bad variable or file value); and the option
reference as a markdown table, for the README. The peers' spellings of a choice
(``--ssl-cert-reqs 2``, ``--log-level trace``) are taken here; their spellings of
flags are ``peer_flags.py``'s. The commands that use them, and the
exit codes, are ``cli.py``'s.

Runs in the main thread, at startup, before any event loop exists. Reads the
environment and at most one settings file; starts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from .config import Config, option_fields
from .config_file import load_file_settings, load_python_config
from .errors import ConfigError
from .hooks import Hooks

__all__ = [
    "ENV_PREFIX",
    "JOINED",
    "Option",
    "UsageError",
    "add_option",
    "app_options",
    "app_source",
    "config_options",
    "file_key",
    "option_source",
    "option_value",
    "read_settings_file",
    "usage_table_markdown",
]

ENV_PREFIX = "AIOGATE_"

#: Comma-separated list settings: a repeated flag adds to the list (uvicorn's
#: --reload-dir, --reload-include and --reload-exclude are repeatable).
JOINED = frozenset({"reload_dirs", "reload_include", "reload_exclude"})

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
        return Option(**common, parse=_any_case(choices), choices=tuple(choices))
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


#: The peers' spellings of choices: gunicorn's --cert-reqs and uvicorn's
#: --ssl-cert-reqs take ssl.CERT_* numbers; uvicorn's log level trace is our debug.
_PEER_CHOICES = {"0": "none", "1": "optional", "2": "required", "trace": "debug"}


@cache
def _any_case(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser that takes a choice in any case (gunicorn's ``--log-level DEBUG``),
    or a peer's spelling of it (``_PEER_CHOICES``), and gives its own spelling;
    other text is left for the choices check to refuse."""
    spelling = {choice.lower(): choice for choice in choices}
    spelling.update(
        (peer, ours) for peer, ours in _PEER_CHOICES.items() if ours in choices
    )

    def parse(text: str) -> str:
        return spelling.get(text.lower(), text)

    return parse


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
            "level), or a Python file (*.py, as gunicorn's -c: settings and server "
            "hooks). Without it, [tool.aiogate] of ./pyproject.toml is read if "
            "present. Flags and AIOGATE_* variables win over the file.",
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
        return "[]"  # as --print-config and the settings file write it
    if value == "":
        return '""'
    return str(value)


def add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """Add ``option`` to ``parser``. A flag not given leaves no attribute in the
    namespace (``argparse.SUPPRESS``), so ``option_value`` falls back to the
    variable, the settings file, then the default."""
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
    elif option.repeatable:  # one item per flag; option_value makes the list a tuple
        parser.add_argument(
            option.flag,
            dest=option.dest,
            action="append",
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    else:
        # -c: gunicorn's short flag for its config file.
        short = ("-c",) if option.dest == "config" else ()
        parser.add_argument(
            *short,
            option.flag,
            dest=option.dest,
            type=option.parse,
            choices=option.choices,
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=help_text,
            action=_Join if option.dest in JOINED else "store",
        )


class _Join(argparse.Action):
    """A ``JOINED`` option given again adds to its comma-separated list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if hasattr(namespace, self.dest):
            values = f"{getattr(namespace, self.dest)},{values}"
        setattr(namespace, self.dest, values)


class UsageError(Exception):
    """A bad value found after argparse is done (environment, missing TARGET)."""


def file_key(option: Option) -> str:
    """The option's key in a settings file: its name, ``app`` for the target."""
    return "app" if option.dest == "target" else option.dest


def option_source(args: argparse.Namespace, option: Option) -> str:
    """Where the option's value comes from: flag, env, file or default."""
    if option.flag == "TARGET":
        if args.target is not None:
            return "flag"
    elif hasattr(args, option.dest):
        return "flag"
    if option.envvar in os.environ:
        return "env"
    if file_key(option) in getattr(args, "file_settings", {}):
        return "file"
    return "default"


def _from_file(args: argparse.Namespace, option: Option) -> Any:
    """A file's value for ``option``, checked against the option's type."""
    value = args.file_settings[file_key(option)]
    where = f"{args.file_source}: {file_key(option)} = {value!r}"
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
                raise UsageError(f"{where}: {exc}") from None
    if not valid:
        raise UsageError(f"{where}: expected {_type_name(option)}")
    if option.choices is not None and value not in option.choices:
        raise UsageError(f"{where}: expected one of {', '.join(option.choices)}")
    return value


def _type_name(option: Option) -> str:
    if option.repeatable:
        return "an array of strings"
    if option.is_bool:
        return "true or false"
    if option.parse is int:
        return "an integer"
    return "a number" if option.parse is float else "a string"


def option_value(args: argparse.Namespace, option: Option) -> Any:
    """Flag > ``AIOGATE_*`` variable > settings file > default; ``UsageError`` for a
    bad variable or file value."""
    if option.flag == "TARGET":
        if args.target is not None:
            return args.target
    elif hasattr(args, option.dest):
        value = getattr(args, option.dest)
        return tuple(value) if option.repeatable else value
    text = os.environ.get(option.envvar)
    if text is None:
        if file_key(option) in getattr(args, "file_settings", {}):
            return _from_file(args, option)
        return option.default
    try:
        value = option.parse(text)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"environment variable {option.envvar}={text!r}: {exc}"
        ) from None
    if option.choices is not None and value not in option.choices:
        raise UsageError(
            f"environment variable {option.envvar}={text!r}: "
            f"expected one of {', '.join(option.choices)}"
        )
    return value


def read_settings_file(args: argparse.Namespace) -> None:
    """Load ``--config`` or ``[tool.aiogate]`` into ``args`` (``file_settings``,
    ``file_source``, and ``hooks`` from a Python file); unknown keys are a usage
    error."""
    config_option = next(o for o in app_options() if o.dest == "config")
    path = option_value(args, config_option)
    args.hooks = Hooks()
    try:
        if path is not None and path.endswith(".py"):
            (settings, args.hooks), source = load_python_config(path), path
        else:
            settings, source = load_file_settings(path, Path.cwd())
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    # gunicorn's chdir (a Python config file's): what --chdir does, which wins.
    directory = settings.pop("chdir", None)
    if directory is not None and getattr(args, "peer_chdir", None) is None:
        args.peer_chdir = str(directory)
    known = {file_key(o) for o in (*app_options(), *config_options())} - {"config"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UsageError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    args.file_settings, args.file_source = settings, source


def app_source(args: argparse.Namespace) -> tuple[str, bool, str]:
    """(target, factory, app_dir) from the flags, the environment and the file."""
    target, factory, app_dir = (
        option_value(args, option)
        for option in app_options()
        if option.dest != "config"
    )
    if not target:
        raise UsageError(f"no app given: pass TARGET or set {ENV_PREFIX}APP")
    return target, factory, app_dir


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
        elif option.dest == "config":
            flag = f"`-c {option.metavar}` / `{option.flag} {option.metavar}`"
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
