"""Connection strings made safe to print: the password never leaves this process.

Every DSN that reaches output, a log line or an error message goes through
`redact()`; every error text from libpq goes through `scrub()`, which also
removes the password should a server or libpq quote it back.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg import conninfo

MASK = "***"
_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***, in the form it was written in."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return _redact_uri(dsn)
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    if "password" not in params:
        return dsn
    # Keep the user's own spelling and order; fall back to a rebuilt string should
    # the pattern miss (it is checked, so a password can never slip through).
    masked = _KV_PASSWORD.sub(f"password={MASK}", dsn)
    if password_of(masked) == MASK:
        return masked
    params["password"] = MASK
    return conninfo.make_conninfo("", **params)


def password_of(dsn: str) -> str | None:
    try:
        value = conninfo.conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(value) if value else None


def scrub(text: str, dsn: str) -> str:
    """One line of error text, with the DSN's password (if any) masked out."""
    line = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    secret = password_of(dsn)
    if secret:
        line = line.replace(secret, MASK)
    return line


def _redact_uri(dsn: str) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if sep and _password else f"{user}@{hosts}"
    query = parts.query
    if query:
        pairs = [
            (k, MASK if k == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
