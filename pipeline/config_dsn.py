"""The secrets of the shard map: its DSNs, with `${VAR}` expanded from the environment (where
passwords are kept, out of the file) and then checked, without ever quoting a DSN back in
an error, since it may hold a password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from psycopg import conninfo

from pipeline.dsn import is_ambiguous_uri
from pipeline.errors import ConfigError

EMBEDDED_PREFIX = "embedded:"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Expander:
    """`${VAR}` and `${VAR:-fallback}` expanded the way a shell does: the fallback applies when
    VAR is unset or empty, may itself hold `${...}` (`${A:-${B:-x}}`), and is only looked at
    when it applies. Values from the environment are not expanded again. Any other `${`
    form is refused, rather than left in the DSN as text."""

    def __init__(self, value: str, environ: Mapping[str, str], key: str, fail: Any) -> None:
        self.value, self.environ, self.key, self.fail = value, environ, key, fail
        self.names: list[str] = []  # the variables named, for messages

    def expand(self) -> str:
        text, _ = self._text(0, evaluate=True, inside=False)
        return text

    def _text(self, i: int, evaluate: bool, inside: bool) -> tuple[str, int]:
        """The expansion of value[i:], up to the `}` closing a fallback when `inside`;
        returns it and the index it stopped at (that `}`, or the end)."""
        out: list[str] = []
        value = self.value
        while i < len(value):
            if inside and value[i] == "}":
                return "".join(out), i
            if value.startswith("${", i):
                text, i = self._variable(i + 2, evaluate)
                out.append(text)
                continue
            out.append(value[i])
            i += 1
        if inside:
            raise self._unsupported("a ${ without its closing }")
        return "".join(out), i

    def _variable(self, i: int, evaluate: bool) -> tuple[str, int]:
        match = _VARIABLE_NAME.match(self.value, i)
        if match is None:
            raise self._unsupported("${ must be followed by a variable name")
        name, i = match.group(), match.end()
        self.names.append(name)
        fallback: str | None = None
        if self.value.startswith("}", i):
            i += 1
        elif self.value.startswith(":-", i):
            current = self.environ.get(name)
            fallback, i = self._text(i + 2, evaluate and not current, inside=True)
            i += 1  # the closing }
        else:
            raise self._unsupported(f"${{{name} is followed by neither }} nor :-")
        if not evaluate:
            return "", i
        current = self.environ.get(name)
        if current:
            return current, i
        if fallback is not None:
            return fallback, i
        raise self.fail(
            self.key,
            f"environment variable {name} is not set and has no fallback (${{{name}:-...}})",
        )

    def _unsupported(self, why: str) -> ConfigError:
        return self.fail(  # type: ignore[no-any-return]
            self.key, f"{why} (write ${{VAR}} or ${{VAR:-fallback}}; a fallback may nest them)"
        )


def expand(value: str, environ: Mapping[str, str], key: str, fail: Any) -> str:
    """`value` with its ${VAR} expanded (see _Expander); refuses an empty result, which libpq
    would silently take for its defaults (the local server, the user's own name)."""
    expander = _Expander(value, environ, key, fail)
    dsn = expander.expand().strip()
    if not dsn:
        names = ", ".join(dict.fromkeys(expander.names))
        raise fail(
            key,
            f"empty after expanding {names}: set the variable or give a non-empty fallback "
            "(an empty DSN would mean libpq's defaults)",
        )
    return dsn


def check_dsn(key: str, dsn: str, fail: Any) -> str:
    """`dsn` if it is embedded:NAME or a connection string libpq reads as written."""
    if dsn.startswith(EMBEDDED_PREFIX):
        database = dsn[len(EMBEDDED_PREFIX) :]
        if not _DB_NAME.match(database):
            raise fail(key, "embedded:NAME needs a database name of letters, digits and _")
        return dsn
    if is_ambiguous_uri(dsn):
        # libpq would read part of the password as the host, port or database (and print
        # it in its errors): refuse, and say how to write it.
        raise fail(
            key,
            "libpq would misread this URI: an unencoded @ may only end user:password@, and "
            "a password may not hold an unencoded /; percent-encode them (@ as %40, / as %2F; "
            "also : %3A, ? %3F, # %23, % %25), or use a key/value string with password='...'",
        )
    try:
        conninfo.conninfo_to_dict(dsn)
    except Exception:
        # libpq's message can quote the string back, password and all: do not pass it on.
        raise fail(key, "not a valid libpq connection string or postgresql:// URI") from None
    return dsn
