"""The erasure key, and the keyed hashes that stand for a person in the erasure log.

The erasure log (sql/migrations/0008_erasure_log.sql) holds no personal data in the clear:
a person is an HMAC-SHA256, under a key that never reaches a shard, of the fields an
erasure matched, normalised. The key comes from PIPELINE_ERASURE_KEY or from the file
`erasure_key_file:` in the shard map names (pipeline.config takes both in); this module
reads and checks it. Lose the key and the log matches nobody any more; leak it and anyone
holding the log can test guesses of names against it.

The normalisation is the load's (every field trimmed of pipeline.rules.TRIM) and
case-insensitive for A-Z only: the text's UTF-8 bytes with ASCII letters lowered, which is
what PostgreSQL's `lower(... COLLATE "C")` does whatever the server's own collation
(sql/erase/person.sql computes the same hash on the shards, for `erase` and `check`).
Python's str.lower() lowers every script, and a shard's lower() under another collation
whatever that collation's tables say: a hash must come out the same on every shard and in
every load, so other letters are compared as written (É is not é).

A message is the level (`name`, `name+age`, `name+address`, `name+age+address`), then
0x1E, then the level's fields joined by 0x1F: the name, the age in decimal, the address
(a missing age or address is empty).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ERASURE_KEY_ENV, ShardMap
from pipeline.errors import ConfigError
from pipeline.regular_file import NotRegular, TooLarge, read_bounded
from pipeline.rules import TRIM

LEVELS = ("name", "name+age", "name+address", "name+age+address")
MIN_KEY_CHARS = 32  # a key shorter than this is refused: the hashes are only as good as it
MAX_KEY_FILE_BYTES = 4096
KEY_FILE = "~/.config/resident-pipeline/erasure.key"
MAKE_A_KEY = (
    f'mkdir -p ~/.config/resident-pipeline && python3 -c "import secrets; '
    f'print(secrets.token_hex(32))" > {KEY_FILE} && chmod 600 {KEY_FILE}, then set '
    f"erasure_key_file: {KEY_FILE} in the shard map (or export {ERASURE_KEY_ENV})"
)
_KEY_ID_MESSAGE = b"resident-pipeline erasure key id"
_BLOCK = 64  # SHA-256's block size: HMAC pads its key to it


def normalised(text: str | None) -> bytes:
    """A field as the hashes see it: trimmed, UTF-8, A-Z lowered; nothing (None) is b""."""
    if text is None:
        return b""
    return text.strip(TRIM).encode("utf-8").lower()  # bytes.lower() lowers ASCII only


def level_of(age: bool, address: bool) -> str:
    """The level of an erasure that matched the name and, when given, the age and address."""
    return "name" + ("+age" if age else "") + ("+address" if address else "")


def person_message(level: str, name: str | None, age: int | None, address: str | None) -> bytes:
    """What is hashed for a person at `level` (see the module docstring)."""
    parts = [normalised(name)]
    if "+age" in level:
        parts.append(b"" if age is None else str(int(age)).encode())
    if "+address" in level:
        parts.append(normalised(address))
    return level.encode() + b"\x1e" + b"\x1f".join(parts)


@dataclass(frozen=True)
class ErasureKey:
    """The secret, and the hashes made with it."""

    secret: bytes = field(repr=False)

    def digest(self, message: bytes) -> bytes:
        return hmac.digest(self.secret, message, "sha256")

    @property
    def key_id(self) -> bytes:
        """Which key this is (stored with each entry), without saying anything of it."""
        return self.digest(_KEY_ID_MESSAGE)[:8]

    def person_hash(
        self, level: str, name: str | None, age: int | None = None, address: str | None = None
    ) -> bytes:
        return self.digest(person_message(level, name, age, address))

    def name_hash(self, name: str | None) -> bytes:
        return self.person_hash("name", name)

    def name_hashes(self, names: list[str | None]) -> list[bytes]:
        """name_hash of each of `names` (None: b""), as fast as Python goes: HMAC's two
        hash states, the inner one past the level's prefix, are made once and copied for
        each name (about 1.8 us a name on the workbench; hmac.digest took 2.6)."""
        pads = self.pads()
        inner, outer = hashlib.sha256(pads["inner"] + b"name\x1e"), hashlib.sha256(pads["outer"])
        found = []
        for name in names:
            if name is None:
                found.append(b"")
                continue
            step = inner.copy()
            step.update(normalised(name))
            last = outer.copy()
            last.update(step.digest())
            found.append(last.digest())
        return found

    def target_hash(self, shard: str, resident_id: int) -> bytes:
        """The hash of an erasure by SHARD:ID, so that a re-run knows the row it removed."""
        return self.digest(b"target\x1e" + shard.encode() + b"\x1f" + str(resident_id).encode())

    def pads(self) -> dict[str, bytes]:
        """HMAC's two padded keys, as the parameters `inner` and `outer` of
        sql/erase/person.sql: HMAC(k, m) = sha256((k ^ opad) || sha256((k ^ ipad) || m)),
        which PostgreSQL's own sha256() computes, with no extension."""
        key = self.secret if len(self.secret) <= _BLOCK else hashlib.sha256(self.secret).digest()
        key = key.ljust(_BLOCK, b"\0")
        return {
            "inner": bytes(b ^ 0x36 for b in key),
            "outer": bytes(b ^ 0x5C for b in key),
        }


def erasure_key(shard_map: ShardMap) -> ErasureKey | None:
    """The erasure key: PIPELINE_ERASURE_KEY, else the map's erasure_key_file; None when
    neither is set. A key that is too short, or a file that is not a private regular file,
    is a ConfigError."""
    if shard_map.erasure_key_env is not None:
        return _checked(shard_map.erasure_key_env, ERASURE_KEY_ENV)
    path = shard_map.erasure_key_file
    if path is None:
        return None
    return _checked(_read_key_file(path), str(path))


def require_key(shard_map: ShardMap, why: str) -> ErasureKey:
    """The erasure key, or a ConfigError (exit 2) saying how to make one."""
    key = erasure_key(shard_map)
    if key is None:
        raise ConfigError(f"{why} needs the erasure key, and none is set: {MAKE_A_KEY}")
    return key


def _checked(text: str, where: str) -> ErasureKey:
    secret = text.strip()
    if len(secret) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{where}: the erasure key must have at least {MIN_KEY_CHARS} characters"
            f" (make one: {MAKE_A_KEY})"
        )
    return ErasureKey(secret.encode("utf-8"))


def _read_key_file(path: Path) -> str:
    """The key file's text: a regular file of at most MAX_KEY_FILE_BYTES that only its
    owner may read (as ssh asks of a private key)."""
    try:
        data, info = read_bounded(path, MAX_KEY_FILE_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: erasure key file not found (make one: {MAKE_A_KEY})") from None
    except NotRegular:
        raise ConfigError(f"{path}: the erasure key file is not a regular file") from None
    except TooLarge:
        raise ConfigError(
            f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes: not an erasure key"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the erasure key: {exc.strerror or exc}") from None
    if info.st_mode & 0o077:
        raise ConfigError(f"{path}: the erasure key file may be read by others: chmod 600 {path}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the erasure key file is not UTF-8 text") from None
