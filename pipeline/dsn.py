"""Connection strings made safe to print: the password never leaves this process.

Every DSN that reaches output, a log line or an error message goes through
`redact()`; every error text from libpq goes through `scrub()`, which also
removes the password should a server or libpq quote it back.

Neither relies on the DSN being well formed. A password put into a URI from the
environment (`postgresql://etl:${PW}@host/db`) may hold an unencoded `@`, `/` or
`#`, which libpq then reads as part of the host, port or database name. So a URI's
credentials are taken in their widest reading, everything up to its *last* `@`, and
when libpq's reading differs from that (`is_ambiguous_uri`), every value libpq read
counts as secret in error texts. The shard map refuses such URIs anyway
(`pipeline.config`), with a message saying how to percent-encode the password.
"""

from __future__ import annotations

from urllib.parse import unquote

from psycopg import conninfo

MASK = "***"
URI_SCHEMES = ("postgresql://", "postgres://")
_USER_ENDS = frozenset(":@/?#&=")  # a plain user name in a URI holds none of these


def is_uri(dsn: str) -> bool:
    return dsn.startswith(URI_SCHEMES)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***, in the form it was written in."""
    if is_uri(dsn):
        return _redact_uri(dsn)
    pairs = _keyword_pairs(dsn)
    if pairs is None:
        return "<unparsable DSN>"
    out, last = [], 0
    for key, start, end, value in pairs:
        if key == "password":
            out.append(dsn[last:start] + MASK)
        elif key == "dbname" and _holds_dsn(value):
            # libpq expands a dbname that is itself a connection string or URI.
            out.append(dsn[last:start] + _quote(redact(value)))
        else:
            continue
        last = end
    return "".join(out) + dsn[last:]


def scrub(text: str, dsn: str) -> str:
    """One line of error text, with the DSN's password (if any) masked out."""
    line = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    for secret in sorted(secrets_of(dsn), key=len, reverse=True):
        line = line.replace(secret, MASK)
    return line


def secrets_of(dsn: str) -> set[str]:
    """Every text that may be (part of) the DSN's password, as written and as decoded."""
    found: set[str] = set()
    libpq = _libpq_reading(dsn)
    if libpq.get("password"):
        found.add(libpq["password"])
    if is_uri(dsn):
        rest = dsn.split("://", 1)[1]
        userinfo, _, tail = rest.rpartition("@")
        _user, colon, password = userinfo.partition(":")
        if colon and password:
            found |= {password, unquote(password)}
        for key, value in _query_pairs(tail):
            if key == "password" and value:
                found |= {value, unquote(value)}
        if is_ambiguous_uri(dsn):
            # libpq read pieces of the password as a host, a port or a database name, and
            # its errors quote them ("could not translate host name "ss@h""): hide them all.
            found |= {v for v in libpq.values() if v}
    else:
        for key, start, end, value in _keyword_pairs(dsn) or []:
            if key == "password" and value:
                # as libpq reads it (quoted in errors), and as written (escapes and all)
                found |= {value, dsn[start:end].strip("'")}
            elif key == "dbname" and _holds_dsn(value):
                found |= secrets_of(value)
    return {s for s in found if s}


def is_ambiguous_uri(dsn: str) -> bool:
    """True when libpq would not read a URI's credentials as everything up to its last `@`:
    an `@` or `/` in the password (or anywhere after the host) that is not percent-encoded."""
    if not is_uri(dsn):
        return False
    rest = dsn.split("://", 1)[1]
    if "@" not in rest:
        return False
    # libpq looks for the credentials' `@` up to the first `/`, and takes the first one.
    first_at, first_slash = rest.find("@"), rest.find("/")
    return rest.count("@") > 1 or (first_slash != -1 and first_slash < first_at)


def _redact_uri(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    userinfo, at, tail = rest.rpartition("@")
    credentials = ""
    if at:
        user = _plain_user(userinfo)
        # Anything beyond a plain user name (a password, or pieces of one that libpq
        # would misread) is hidden.
        credentials = f"{user}@" if user == userinfo else f"{user}:{MASK}@"
    return f"{scheme}://{credentials}{_redact_query(tail)}"


def _plain_user(userinfo: str) -> str:
    for i, char in enumerate(userinfo):
        if char in _USER_ENDS:
            return userinfo[:i]
    return userinfo


def _redact_query(tail: str) -> str:
    base, question, query = tail.partition("?")
    if not question:
        return tail
    params = []
    for param in query.split("&"):
        key, equals, _value = param.partition("=")
        params.append(f"{key}={MASK}" if equals and unquote(key) == "password" else param)
    return f"{base}?{'&'.join(params)}"


def _query_pairs(tail: str) -> list[tuple[str, str]]:
    _base, _, query = tail.partition("?")
    pairs = []
    for param in query.split("&") if query else []:
        key, _, value = param.partition("=")
        pairs.append((unquote(key), value))
    return pairs


def _libpq_reading(dsn: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items() if v is not None}
    except Exception:
        return {}


def _keyword_pairs(dsn: str) -> list[tuple[str, int, int, str]] | None:
    """(keyword, start, end, value) of each `keyword=value` of a libpq key/value string, where
    dsn[start:end] is the value as written; None when it is not one. Follows libpq's own
    parser (conninfo_parse): values are bare or single-quoted, backslash escapes a character."""
    pairs: list[tuple[str, int, int, str]] = []
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            return pairs
        start = i
        while i < n and not dsn[i].isspace() and dsn[i] != "=":
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=" or not key:
            return None
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        start, value = i, []
        quoted = i < n and dsn[i] == "'"
        if quoted:
            i += 1
        while i < n:
            char = dsn[i]
            if char == "\\" and i + 1 < n:
                value.append(dsn[i + 1])
                i += 2
                continue
            if (quoted and char == "'") or (not quoted and char.isspace()):
                break
            value.append(char)
            i += 1
        if quoted:
            if i >= n:
                return None  # an unterminated quote
            i += 1
        pairs.append((key, start, i, "".join(value)))


def _holds_dsn(value: str) -> bool:
    return is_uri(value) or "=" in value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
