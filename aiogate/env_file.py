"""``--env-file``: a dotenv file of ``KEY=VALUE`` lines loaded into the environment.

Owns: parsing such a file (``read_env_file``) and loading it (``load_env_file``). Runs
in the main thread, at startup, before the ``AIOGATE_*`` variables are read, so the
file can hold aiogate's own settings as well as the app's (uvicorn's ``--env-file``,
which uses python-dotenv; this is the subset of its syntax that Procfile, Docker
``--env-file`` and systemd ``EnvironmentFile=`` users write):

1. One ``KEY=VALUE`` a line; blank lines and lines starting with ``#`` are skipped; a
   leading ``export`` is allowed, so the file can also be sourced by a shell.
2. ``KEY`` is a shell name (letters, digits, ``_``, not starting with a digit).
3. A value in single quotes is taken as it is. A value in double quotes may use
   ``\\n``, ``\\t``, ``\\"`` and ``\\\\``. An unquoted value is trimmed, and ``#``
   after a space starts a comment. Quoted values end on their line (no multi-line
   values).
4. ``${NAME}`` and ``${NAME:-default}`` in an unquoted or double-quoted value are
   replaced by the variable's value (from the environment, or an earlier line of
   the file), as python-dotenv does; single quotes keep them literal.
5. A variable already in the environment wins over the file (python-dotenv's
   ``override=False``, what uvicorn does), so ``AIOGATE_PORT=9000 aiogate serve
   --env-file .env`` still means port 9000.

Anything else is an ``EnvFileError`` naming the file and the line; the command line
turns it into a one-line error and exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping

from .errors import ConfigError

__all__ = ["EnvFileError", "load_env_file", "read_env_file"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class EnvFileError(ConfigError):
    """A missing, unreadable or malformed env file (the message names it)."""


def _double_quoted(text: str) -> tuple[str, str] | None:
    """The value inside ``"..."`` at the start of ``text`` (escapes applied) and what
    follows the closing quote, or None when it is not closed on this line."""
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        if char == '"':
            return "".join(out), text[index + 1 :]
        out.append(char)
        index += 1
    return None


def _expand(value: str, known: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        found = known.get(match[1])
        if found is None or (found == "" and match[2] is not None):
            return match[2] or ""
        return found

    return _REFERENCE.sub(replace, value)


def _parse_value(raw: str, known: Mapping[str, str]) -> str:
    """The value of one line, from the text after ``=``; ValueError when bad."""
    text = raw.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        if end < 0:
            raise ValueError("unterminated single quote")
        value, rest = text[1:end], text[end + 1 :]
        expand = False
    elif text.startswith('"'):
        parsed = _double_quoted(text)
        if parsed is None:
            raise ValueError("unterminated double quote")
        value, rest = parsed
        expand = True
    else:
        # A "#" after white space starts a comment; one inside a word (a URL's
        # fragment, a colour) does not, as in python-dotenv.
        value, rest = re.split(r"\s#", text, maxsplit=1)[0].rstrip(), ""
        expand = True
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ValueError(f"unexpected text after the closing quote: {rest!r}")
    return _expand(value, known) if expand else value


def read_env_file(
    path: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables ``path`` sets, in order; ``EnvFileError`` for a file that cannot
    be read or a line that is not ``KEY=VALUE``. ``environ`` (default
    ``os.environ``) supplies ``${NAME}`` references the file does not define."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise EnvFileError(f"env file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"env file {path!r}: not UTF-8 ({exc.reason})") from None
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export ") or text.startswith("export\t"):
            text = text[len("export") :].lstrip()
        key, equals, raw = text.partition("=")
        key = key.strip()
        if not equals or not _NAME.fullmatch(key):
            raise EnvFileError(f"{path}:{number}: expected KEY=VALUE, not {line!r}")
        try:
            found[key] = _parse_value(raw, {**environ, **found})
        except ValueError as exc:
            raise EnvFileError(f"{path}:{number}: {key}: {exc}") from None
    return found


def load_env_file(
    path: str, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Put the variables of ``path`` into ``environ`` (default ``os.environ``),
    except those it already has (rule 5); what was set."""
    environ = os.environ if environ is None else environ
    loaded = {
        key: value
        for key, value in read_env_file(path, environ).items()
        if key not in environ
    }
    environ.update(loaded)
    return loaded
