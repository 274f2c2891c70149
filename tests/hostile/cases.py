"""The standing corpus of hostile input files, and what `pipeline load` must do with each.

Every case writes its input under a folder at test time (large inputs and compression
bombs are generated, never stored) and states the outcome: the exit code, a piece of the
message, the reject reasons in order, the residents left on the shards, and the bounds on
the load process's peak memory and CPU time (measured by the kernel, see test_corpus.py).
Unless a case says otherwise, it loads with `--max-rejects 100%`, so that the rejects
budget does not hide what the reader did with each record.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HEADER = "id,country,name,gender,age,address\n"
GOOD_CSV = "9,DE,Good Row,F,40,Main St\n"
GOOD = {"id": 9, "country": "DE", "name": "Good Row"}
GOOD_JSON = json.dumps(GOOD).encode()
MB = 1 << 20
OP_HEADER = HEADER.rstrip("\n") + ",_op\n"  # with the delete-marker column
GOOD_CSV_OP = GOOD_CSV.rstrip("\n") + ",\n"
MARKED = range(100, 200_100)

Make = Callable[[Path], list[Path]]


@dataclass(frozen=True)
class Case:
    name: str
    make: Make  # writes the input under the folder; returns the paths to name on the command line
    exit_code: int
    rejects: tuple[str, ...] = ()  # reason codes, in file order
    message: str = ""  # in stderr or a reject's message ("" for nothing in particular)
    names: tuple[str, ...] = ()  # the residents' names on the shards afterwards, sorted
    args: tuple[str, ...] = ("--max-rejects", "100%")
    limits: str = ""  # a `limits:` section for the rules file
    # Peak memory over that of a load of one good row in the same environment (pyarrow's
    # libraries are most of a load's 100-130 MB, and how much of them the kernel maps moves
    # by 30 MB between a fresh virtualenv and an old one: measured). 50 MB over is what the
    # load's budget of 150 MB allows at any size over the 100 MB such a load took.
    max_extra_mb: int = 50
    max_cpu_s: float = 8.0
    slow: bool = False
    needs: tuple[str, ...] = field(default_factory=tuple)  # paths that must exist (devices)


def write(name: str, data: str | bytes) -> Make:
    def make(folder: Path) -> list[Path]:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(data)
        return [path]

    return make


def gz_stream(name: str, parts: Callable[[], list[tuple[bytes, int]]]) -> Make:
    """A gzip file of (piece, times) repeated, written a block at a time (never in memory)."""

    def make(folder: Path) -> list[Path]:
        path = folder / name
        with gzip.open(path, "wb", compresslevel=6) as out:
            for piece, times in parts():
                block = piece * max(1, MB // max(1, len(piece)))
                per_block = len(block) // len(piece)
                full, rest = divmod(times, per_block)
                for _ in range(full):
                    out.write(block)
                out.write(piece * rest)
        return [path]

    return make


def ndjson(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def raw_ndjson(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def person(name: str, **more: object) -> dict[str, object]:
    return {"id": 1, "country": "DE", "name": name, **more}


def deep(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


def special(kind: str) -> Make:
    def make(folder: Path) -> list[Path]:
        if kind == "fifo":
            path = folder / "pipe.csv"
            os.mkfifo(path)
        else:
            path = folder / f"{Path(kind).name}.csv"
            path.symlink_to(kind)
        return [path]

    return make


def folder_with_fifo(folder: Path) -> list[Path]:
    inbox = folder / "inbox"
    inbox.mkdir()
    os.mkfifo(inbox / "a-pipe.csv")
    (inbox / "b-zero.csv").symlink_to("/dev/zero")
    (inbox / "c-good.csv").write_text(HEADER + GOOD_CSV)
    return [inbox]


def bad_then_good(folder: Path) -> list[Path]:
    bad = folder / "a-bad.csv"
    bad.write_bytes(HEADER.encode() + b"1,DE,\xff\xfe,F,1,x\n")
    good = folder / "b-good.csv"
    good.write_text(HEADER + GOOD_CSV)
    return [bad, good]


def utf16_file(folder: Path) -> list[Path]:
    path = folder / "utf16.csv"
    path.write_text(HEADER + GOOD_CSV, encoding="utf-16")
    return [path]


def truncated_gzip(folder: Path) -> list[Path]:
    path = folder / "cut.csv.gz"
    path.write_bytes(gzip.compress((HEADER + GOOD_CSV * 1000).encode())[:-20])
    return [path]


def many_keys(count: int) -> str:
    record: dict[str, object] = {f"k{i}": 0 for i in range(count)}
    record.update(GOOD)
    return json.dumps(record)


CASES: list[Case] = [
    # -- text that is not valid Unicode: invalid_text, in every format ---------------------
    Case(
        "json-lone-high-surrogate",
        write(
            "s.json", '[{"id": 1, "country": "DE", "name": "A\\ud800"}, ' + json.dumps(GOOD) + "]"
        ),
        0,
        ("invalid_text",),
        names=("Good Row",),
    ),
    Case(
        "ndjson-lone-high-surrogate",
        write(
            "s.ndjson",
            raw_ndjson('{"id": 1, "country": "DE", "name": "\\ud800"}', json.dumps(GOOD)),
        ),
        0,
        ("invalid_text",),
        names=("Good Row",),
    ),
    Case(
        "ndjson-lone-low-surrogate-in-address",
        write(
            "s.ndjson", raw_ndjson('{"id": 1, "country": "DE", "name": "A", "address": "x\\udfff"}')
        ),
        0,
        ("invalid_text",),
    ),
    Case(
        "json-surrogate-in-a-key",
        write("s.json", '[{"id": 1, "country": "DE", "name": "A", "\\udc00": 1}]'),
        0,
        ("invalid_text",),
    ),
    Case(
        "json-surrogate-in-a-non-object",
        write("s.json", '["\\ud800", ' + json.dumps(GOOD) + "]"),
        0,
        ("invalid_text",),
        names=("Good Row",),
    ),
    Case(
        "json-surrogate-pair-is-valid",
        write("s.json", '[{"id": 1, "country": "DE", "name": "Smile \\ud83d\\ude00"}]'),
        0,
        names=("Smile \U0001f600",),
    ),
    Case(
        "csv-unicode-escape-encoding-surrogate",
        write("s.csv", HEADER + "1,DE,A\\ud800,F,1,x\n" + GOOD_CSV),
        0,
        ("invalid_text",),
        names=("Good Row",),
        args=("--max-rejects", "100%", "--encoding", "unicode_escape"),
    ),
    Case(
        "ndjson-nul-character",
        write(
            "n.ndjson",
            raw_ndjson('{"id": 1, "country": "DE", "name": "A\\u0000B"}', json.dumps(GOOD)),
        ),
        0,
        ("invalid_text",),
        names=("Good Row",),
    ),
    Case(
        "csv-nul-byte",
        write("n.csv", HEADER + "1,DE,A\0B,F,1,x\n" + GOOD_CSV),
        0,
        ("invalid_text",),
        names=("Good Row",),
    ),
    Case(
        "csv-invalid-utf8",
        write("b.csv", HEADER.encode() + b"1,DE,\xc3\x28,F,1,x\n"),
        1,
        ("file_rejected",),
        message="not valid utf-8",
    ),
    # -- encodings that fail other than by UnicodeDecodeError: a file error, no traceback ---
    Case(
        "encoding-utf16-on-utf8-bytes",
        write("e.csv", HEADER + "1,DE,Odd,F,1,x\n"),
        1,
        ("file_rejected",),
        message="utf-16",
        args=("--max-rejects", "100%", "--encoding", "utf-16"),
    ),
    Case(
        "encoding-punycode",
        write("e.csv", HEADER + "1,DE,Ünïcödé,F,1,x\n"),
        1,
        ("file_rejected",),
        message="punycode",
        args=("--max-rejects", "100%", "--encoding", "punycode"),
    ),
    Case(
        "encoding-unicode-escape-trailing-backslash",
        write("e.csv", HEADER + "1,DE,A,F,1,x\\"),
        1,
        ("file_rejected",),
        message="unicode_escape",
        args=("--max-rejects", "100%", "--encoding", "unicode_escape"),
    ),
    Case(
        "encoding-utf16-with-bom-loads",
        utf16_file,
        0,
        names=("Good Row",),
        args=("--max-rejects", "100%", "--encoding", "utf-16"),
    ),
    Case(
        "a-bad-file-does-not-stop-the-next",
        bad_then_good,
        1,
        ("file_rejected",),
        "not valid utf-8",
        ("Good Row",),
    ),
    # -- nesting: a reject in bounded memory; the array goes on ----------------------------
    Case(
        "json-gzip-bomb-of-open-brackets",
        gz_stream("deep.json.gz", lambda: [(b"[", 50 * MB)]),
        1,
        ("file_rejected",),
        message="ends inside record 1",
    ),
    Case(
        "json-record-nested-100k-then-good",
        write("d.json", "[" + deep(100_000) + ", " + json.dumps(GOOD) + "]"),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-field-nested-3000",
        write(
            "d.json",
            "["
            + json.dumps(person("A"))[:-1]
            + ', "address": '
            + deep(3000)
            + "}, "
            + json.dumps(GOOD)
            + "]",
        ),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-field-nested-500",
        write("d.json", "[" + json.dumps(person("A"))[:-1] + ', "address": ' + deep(500) + "}]"),
        0,
        ("malformed_record",),
    ),
    Case(
        "json-objects-nested-100k",
        write(
            "d.json", "[" + '{"a": ' * 100_000 + "1" + "}" * 100_000 + ", " + json.dumps(GOOD) + "]"
        ),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-nested-with-strings-holding-brackets",
        write(
            "d.json",
            "["
            + '["]]]", {"}": "[[["}, ' * 2000
            + "1"
            + "]" * 2000
            + ", "
            + json.dumps(GOOD)
            + "]",
        ),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "ndjson-nested-3000",
        write("d.ndjson", raw_ndjson(deep(3000), json.dumps(GOOD))),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "ndjson-objects-nested-50k",
        write("d.ndjson", raw_ndjson('{"a": ' * 50_000 + "1" + "}" * 50_000, json.dumps(GOOD))),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-array-of-arrays",
        write("a.json", "[[1, 2], " + json.dumps(GOOD) + "]"),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-gzip-400mb-of-nesting-closed",
        gz_stream(
            "deep.json.gz",
            lambda: [(b"[", 1), (b"[", 200 * MB), (b"]", 200 * MB), (b", " + GOOD_JSON + b"]", 1)],
        ),
        0,
        ("too_large",),
        names=("Good Row",),
        max_cpu_s=30,
        slow=True,
    ),
    # -- long lines, records and fields: too_large, bounded --------------------------------
    Case(
        "csv-gzip-one-line-of-1gib",
        gz_stream(
            "long.csv.gz",
            lambda: [(HEADER.encode(), 1), (b"x", 1 << 30), (b"\n", 1), (GOOD_CSV.encode(), 1)],
        ),
        0,
        ("too_large",),
        names=("Good Row",),
        max_cpu_s=40,
        slow=True,
    ),
    Case(
        "csv-line-of-3mib",
        write("l.csv", HEADER + "1,DE,A,F,1," + "y" * (3 * MB) + "\n" + GOOD_CSV),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "csv-line-of-3mib-without-end",
        write("l.csv", HEADER + GOOD_CSV + "1,DE,A,F,1," + "y" * (3 * MB)),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "csv-header-of-3mib",
        write("h.csv", "id,country,name," + "z" * (3 * MB) + "\n" + GOOD_CSV),
        1,
        ("file_rejected",),
        message="header is longer than",
    ),
    Case(
        "csv-white-space-line-of-3mib",
        write("w.csv", HEADER + " " * (3 * MB) + "\n" + GOOD_CSV),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        # Each a line of half a million empty fields (under max_line): their raw records
        # are cut to a few fields, or 30 of them held 0.25 GB (0.9 GB for 100 before).
        "csv-rows-of-half-a-million-fields",
        write("w.csv", HEADER + ("1,DE,A,F,1,x" + "," * 500_000 + "\n") * 30 + GOOD_CSV),
        0,
        ("malformed_record",) * 30,
        "500006 fields where the header has 6",
        ("Good Row",),
        args=("--max-rejects", "100%", "--source", "crm", "--mode", "snapshot"),
    ),
    Case(
        # 40,000 rows of 65 short fields, each a reject (a comma too many): their raw
        # records (65 objects each) are counted in a batch's bytes; counted as 64 characters
        # a record, 15,000 of them a batch took a load to 268 MB.
        "csv-40k-rows-of-65-fields",
        write(
            "m.csv",
            HEADER
            + "".join(",".join(f"w{r}x{f}" for f in range(65)) + "\n" for r in range(40_000))
            + GOOD_CSV,
        ),
        0,
        ("malformed_record",) * 40_000,
        "65 fields where the header has 6",
        ("Good Row",),
        max_cpu_s=20,
        slow=True,
    ),
    Case(
        # A header of 1,000 columns, 2,000 valid rows: each row's raw record is kept in its
        # batch for the rejects file, 1,000 objects a row (133 MB a batch before its bytes
        # were counted).
        "csv-2000-rows-of-1000-columns",
        write(
            "k.csv",
            HEADER.rstrip("\n")
            + "".join(f",extra{c}" for c in range(994))
            + "\n"
            + "".join(
                f"{r + 10},DE,Row {r},F,40,Main St" + "".join(f",v{c}" for c in range(994)) + "\n"
                for r in range(2_000)
            )
            + GOOD_CSV.rstrip("\n")
            + "," * 994
            + "\n",
        ),
        0,
        names=tuple(sorted(["Good Row", *(f"Row {r}" for r in range(2_000))])),
        max_cpu_s=20,
        slow=True,
    ),
    Case(
        # JSON objects with a list of strings beside their fields: 60 valid records with
        # 50,000 each, 2,000 refused records (a list for the address) with 2,000. Decoded,
        # such a record takes 3 MB and 120 KB: 15,000 of them a batch took a load to 3 GB
        # (800 of the larger, 240 MB of NDJSON) and 270 MB.
        "ndjson-records-with-long-lists-of-strings",
        write(
            "j.ndjson",
            "".join(
                json.dumps(
                    {"id": r + 10, "country": "DE", "name": f"Row {r}", "junk": ["ab"] * 50_000}
                )
                + "\n"
                for r in range(60)
            )
            + "".join(
                json.dumps({"id": r + 100, "country": "DE", "name": "X", "address": ["ab"] * 2_000})
                + "\n"
                for r in range(2_000)
            )
            + GOOD_JSON.decode()
            + "\n",
        ),
        0,
        ("malformed_record",) * 2_000,
        "address",
        tuple(sorted(["Good Row", *(f"Row {r}" for r in range(60))])),
        max_cpu_s=20,
        slow=True,
    ),
    Case(
        # Ids of 70,000 characters, each record too large: a snapshot keeps no such id (no
        # id is that long), where a batch held on to them all (some 100 MB).
        "ndjson-ids-of-70k-characters-in-a-snapshot",
        write(
            "i.ndjson",
            (json.dumps({"id": "7" * 70_000, "country": "DE", "name": "X"}) + "\n") * 1500
            + GOOD_JSON.decode()
            + "\n",
        ),
        0,
        ("too_large",) * 1500,
        "id: longer than 65536",
        ("Good Row",),
        args=("--max-rejects", "100%", "--source", "crm", "--mode", "snapshot"),
    ),
    Case(
        "csv-field-over-the-limit",
        write("f.csv", HEADER + "1,DE,A,F,1," + "a" * 70_000 + "\n" + GOOD_CSV),
        0,
        ("too_large",),
        "address: longer than 65536",
        ("Good Row",),
    ),
    Case(
        "csv-quoted-field-over-lines-beyond-the-record-limit",
        write("q.csv", HEADER + '1,DE,A,F,1,"' + ("b" * 1000 + "\n") * 1200 + '"\n' + GOOD_CSV),
        1,
        ("file_rejected",),
        message="a quoted field runs over more than",
    ),
    Case(
        "csv-country-of-200k-characters",
        write("c.csv", HEADER + ("1,D" + "E" * 200_000 + ",A,F,1,x\n") * 3 + GOOD_CSV),
        0,
        ("too_large",) * 3,
        names=("Good Row",),
    ),
    Case(
        "csv-country-of-500-characters",
        write("c.csv", HEADER + ("1," + "U" * 500 + ",A,F,1,x\n") * 3 + GOOD_CSV),
        0,
        ("invalid_country",) * 3,
        names=("Good Row",),
    ),
    Case(
        "csv-gzip-120-countries-of-5mb",
        gz_stream(
            "c.csv.gz",
            lambda: [(HEADER.encode(), 1)] + [(b"1,", 1), (b"U", 5 * MB), (b",A,F,1,x\n", 1)] * 120,
        ),
        0,
        ("too_large",) * 120,
        max_cpu_s=30,
        slow=True,
    ),
    Case(
        "json-country-of-2000-characters",
        write("c.json", json.dumps([person("A", country="D" * 2000), GOOD])),
        0,
        ("invalid_country",),
        names=("Good Row",),
    ),
    Case(
        "json-country-of-100k-characters",
        write("c.json", json.dumps([person("A", country="D" * 100_000), GOOD])),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "ndjson-line-of-3mib",
        write("l.ndjson", raw_ndjson(json.dumps(person("y" * (3 * MB))), json.dumps(GOOD))),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "json-string-of-3mib",
        write("s.json", json.dumps([person("y" * (3 * MB)), GOOD])),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "json-gzip-string-of-256mib",
        gz_stream(
            "s.json.gz",
            lambda: [
                (b'[{"name": "', 1),
                (b"y", 256 * MB),
                (b'"}, ', 1),
                (json.dumps(GOOD).encode() + b"]", 1),
            ],
        ),
        0,
        ("too_large",),
        names=("Good Row",),
        max_cpu_s=30,
        slow=True,
    ),
    Case(
        "json-string-of-escapes-3mib",
        write("s.json", '[{"name": "' + '\\\\\\"' * MB + '"}, ' + json.dumps(GOOD) + "]"),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "json-number-of-3m-digits",
        write("n.json", '[{"id": ' + "7" * (3 * MB) + "}, " + json.dumps(GOOD) + "]"),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "csv-gzip-1gib-of-blank-lines",
        gz_stream(
            "b.csv.gz", lambda: [(HEADER.encode(), 1), (b"\n", 1 << 30), (GOOD_CSV.encode(), 1)]
        ),
        0,
        names=("Good Row",),
        max_cpu_s=40,
        slow=True,
    ),
    Case(
        "ndjson-gzip-1gib-of-blank-lines",
        gz_stream(
            "b.ndjson.gz", lambda: [(b"\r\n", 1 << 29), (json.dumps(GOOD).encode() + b"\n", 1)]
        ),
        0,
        names=("Good Row",),
        max_cpu_s=40,
        slow=True,
    ),
    Case(
        # Half a million records of a few characters each (3.5 MB): batches stay bounded
        # by their record count, not only by their bytes. Every record is a reject: a batch
        # of 10,000 rejects and their raw records peaks at 150-160 MB (measured, 50-60 MB over
        # a one-row load), more than a load of valid rows; without the record count a batch
        # held them all (400 MB-1 GB).
        "csv-500k-tiny-records",
        write("t.csv", HEADER + ",,A,,,\n" * 500_000 + GOOD_CSV),
        0,
        ("missing_country",) * 500_000,
        names=("Good Row",),
        max_extra_mb=100,
        max_cpu_s=40,
        slow=True,
    ),
    Case(
        "csv-8mib-of-blank-lines-then-a-bad-row",
        write("b.csv", HEADER + "\n" * (8 * MB) + "1,XX,A,F,1,x\n" + GOOD_CSV),
        0,
        ("invalid_country",),
        names=("Good Row",),
    ),
    Case(
        "json-gzip-1gib-of-white-space",
        gz_stream(
            "w.json.gz", lambda: [(b"[", 1), (b" ", 1 << 30), (json.dumps(GOOD).encode() + b"]", 1)]
        ),
        0,
        names=("Good Row",),
        max_cpu_s=40,
        slow=True,
    ),
    Case(
        "csv-with-limits-from-the-rules",
        write(
            "r.csv",
            HEADER + "1,DE,A,F,1," + "a" * 60 + "\n" + "2,DE,B,F,1," + "a" * 200 + "\n" + GOOD_CSV,
        ),
        0,
        ("too_large", "too_large"),
        names=("Good Row",),
        limits="limits:\n  max_field: 50\n  max_line: 100\n  max_record: 100\n",
    ),
    Case(
        "ndjson-with-limits-from-the-rules",
        write("r.ndjson", ndjson(person("a" * 60), person("b" * 200), GOOD)),
        0,
        ("too_large", "too_large"),
        names=("Good Row",),
        limits="limits:\n  max_field: 50\n  max_line: 100\n  max_record: 100\n",
    ),
    Case(
        "json-with-limits-from-the-rules",
        write("r.json", json.dumps([person("a" * 60), person("b" * 200), GOOD])),
        0,
        ("too_large", "too_large"),
        names=("Good Row",),
        limits="limits:\n  max_field: 50\n  max_line: 100\n  max_record: 100\n",
    ),
    Case(
        "limits-that-are-not-numbers",
        write("r.csv", HEADER + GOOD_CSV),
        2,
        message="limits.max_line: expected an integer",
        limits="limits:\n  max_line: lots\n",
    ),
    # -- the delete-marker column (rules: op_column) ------------------------------------------
    Case(
        "csv-op-column-of-3mib",
        write("o.csv", OP_HEADER + "1,DE,A,F,1,x," + "d" * (3 * MB) + "\n" + GOOD_CSV_OP),
        0,
        ("too_large",),
        names=("Good Row",),
    ),
    Case(
        "ndjson-op-column-nested-and-numeric",
        write("o.ndjson", ndjson(person("A", _op={"delete": True}), person("B", _op=7), GOOD)),
        0,
        ("malformed_record", "invalid_op"),
        names=("Good Row",),
    ),
    Case(
        # 200,000 markers for ids no shard holds: through staging, in bounded memory; each
        # counts as not found.
        "csv-200k-delete-markers-of-nothing",
        write("m.csv", OP_HEADER + "".join(f"{i},DE,,,,,DELETE \n" for i in MARKED) + GOOD_CSV_OP),
        0,
        names=("Good Row",),
        max_cpu_s=20,
        slow=True,
    ),
    # -- many keys: the warning stays one short line ---------------------------------------
    Case(
        "json-object-of-100k-keys",
        write("k.json", "[" + many_keys(60_000) + "]"),
        0,
        names=("Good Row",),
        message="ignored unknown column(s)",
    ),
    Case(
        "ndjson-object-of-100k-keys",
        write("k.ndjson", many_keys(60_000) + "\n"),
        0,
        names=("Good Row",),
        message="ignored unknown column(s)",
    ),
    Case(
        "csv-header-of-50k-columns",
        write(
            "k.csv",
            HEADER.rstrip("\n")
            + "".join(f",c{i}" for i in range(50_000))
            + "\n9,DE,Good Row,F,40,x"
            + "," * 50_000
            + "\n",
        ),
        0,
        names=("Good Row",),
        message="ignored unknown column(s)",
    ),
    Case(
        "json-key-of-a-megabyte-with-escapes",
        write("k.json", json.dumps([{**GOOD, "\x1b[31m" + "k" * (MB // 2): 1}])),
        0,
        names=("Good Row",),
        message="ignored unknown column(s)",
    ),
    # -- numbers: one rule in every format -------------------------------------------------
    Case(
        "ndjson-integer-of-5000-digits",
        write(
            "n.ndjson",
            raw_ndjson(
                '{"id": ' + "9" * 5000 + ', "country": "DE", "name": "A"}', json.dumps(GOOD)
            ),
        ),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-integer-of-5000-digits",
        write(
            "n.json",
            '[{"id": ' + "9" * 5000 + ', "country": "DE", "name": "A"}, ' + json.dumps(GOOD) + "]",
        ),
        0,
        ("malformed_record",),
        names=("Good Row",),
    ),
    Case(
        "json-id-1e3",
        write("n.json", '[{"id": 1e3, "country": "DE", "name": "A"}]'),
        0,
        ("invalid_id",),
    ),
    Case("csv-id-1e3", write("n.csv", HEADER + "1e3,DE,A,F,1,x\n"), 0, ("invalid_id",)),
    Case(
        "json-id-5.0",
        write("n.json", '[{"id": 5.0, "country": "DE", "name": "A"}]'),
        0,
        ("invalid_id",),
    ),
    Case(
        "json-id-nan",
        write("n.json", '[{"id": NaN, "country": "DE", "name": "A"}]'),
        0,
        ("invalid_id",),
    ),
    Case(
        "json-age-1e1",
        write("n.json", '[{"id": 1, "country": "DE", "name": "A", "age": 1e1}]'),
        0,
        ("invalid_age",),
    ),
    Case("csv-age-1e1", write("n.csv", HEADER + "1,DE,A,F,1e1,x\n"), 0, ("invalid_age",)),
    Case(
        "json-age-22.0-loads",
        write("n.json", '[{"id": 1, "country": "DE", "name": "A", "age": 22.0}]'),
        0,
        names=("A",),
    ),
    Case(
        "json-age-1e400",
        write("n.json", '[{"id": 1, "country": "DE", "name": "A", "age": 1e400}]'),
        0,
        ("invalid_age",),
    ),
    # -- names of white space only are missing; the BOM is trimmed -------------------------
    *(
        Case(
            f"json-name-only-u+{ord(c):04x}",
            write("w.json", json.dumps([person(c), GOOD])),
            0,
            ("missing_name",),
            names=("Good Row",),
        )
        for c in "\u2003\u3000\u200b\u0085\u2028\ufeff"
    ),
    Case(
        "csv-name-only-u+3000",
        write("w.csv", HEADER + "1,DE,\u3000\u2003,F,1,x\n" + GOOD_CSV),
        0,
        ("missing_name",),
        names=("Good Row",),
    ),
    Case(
        "csv-name-with-bom-and-spaces-is-trimmed",
        write("w.csv", HEADER + "1,DE,\ufeffAnna\u3000,F,1,x\n"),
        0,
        names=("Anna",),
    ),
    Case(
        "ndjson-country-with-unicode-spaces-routes",
        write("w.ndjson", ndjson(person("Anna", country="\u2003US\u200b"))),
        0,
        names=("Anna",),
    ),
    Case(
        "json-key-with-bom",
        write("w.json", json.dumps([{"\ufeffid": 1, "country": "DE", "\u3000name": "Anna"}])),
        0,
        names=("Anna",),
    ),
    # -- special files ----------------------------------------------------------------------
    Case("fifo-named-directly", special("fifo"), 2, message="not a regular file (a FIFO)"),
    Case(
        "link-to-dev-zero",
        special("/dev/zero"),
        2,
        message="not a regular file (a character device)",
        needs=("/dev/zero",),
    ),
    Case(
        "link-to-dev-urandom",
        special("/dev/urandom"),
        2,
        message="not a regular file (a character device)",
        needs=("/dev/urandom",),
    ),
    Case("folder-with-fifo-and-device-links", folder_with_fifo, 0, names=("Good Row",)),
    Case(
        "dev-null-named-directly",
        lambda folder: [Path("/dev/null")],
        2,
        message="unsupported file type",
    ),
    # -- broken structure: a file error with a reason --------------------------------------
    Case(
        "json-text-after-the-array",
        write("t.json", json.dumps([GOOD]) + " [1]"),
        1,
        ("file_rejected",),
        message="text after the end of the JSON array",
    ),
    Case(
        "json-array-not-closed",
        write("t.json", "[" + json.dumps(GOOD) + ", "),
        1,
        ("file_rejected",),
        message="not closed",
    ),
    Case(
        "json-missing-comma",
        write("t.json", "[" + json.dumps(GOOD) + json.dumps(GOOD) + "]"),
        1,
        ("file_rejected",),
        message="expected , or ]",
    ),
    Case(
        "json-broken-record",
        write("t.json", '[{"id": 1, "country": "DE", "name": tru}]'),
        1,
        ("file_rejected",),
        message="record 1: Expecting value",
    ),
    Case("gzip-truncated", truncated_gzip, 1, ("file_rejected",), message="cannot read"),
    Case(
        "csv-gzip-bomb-of-nul-bytes",
        gz_stream("z.csv.gz", lambda: [(b"\0", 1 << 30)]),
        1,
        ("file_rejected",),
        message="header is longer than",
        slow=True,
    ),
    Case("json-empty-array", write("e.json", "[ ]\n"), 0),
    Case(
        "csv-crlf-and-cr-line-ends",
        write("c.csv", "id,country,name\r\n1,DE,Anna\r2,DE,Ben\r\n"),
        0,
        names=("Anna", "Ben"),
    ),
]
