"""Deterministic resident files for the benchmark: the same seed and size give the same bytes.

Realistic on purpose: several countries with US a large share, names with non-ASCII
letters, addresses with commas, quotes and now and then a newline, about 1% invalid rows
(bad country, bad age, missing name), as CSV, NDJSON and gzipped CSV.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

COUNTRIES = ["US"] * 40 + ["DE"] * 10 + ["FR"] * 8 + ["GB"] * 8 + ["UA"] * 6 + ["CA"] * 6
COUNTRIES += ["JP", "BR", "IN", "MX", "PL", "IT", "ES", "NL", "SE", "NO", "TR", "KR"] * 2
FIRST = ["Anna", "José", "Zoë", "Łukasz", "Björn", "Mary", "John", "Olena", "Chloé", "Mehmet",
         "Søren", "Ünal", "Ngọc", "Ana", "Émile", "Ilse", "Kenji", "Priya"]  # fmt: skip
LAST = ["Smith", "García", "Müller", "Kovalenko", "O'Brien", "Nguyen", "Dubois", "Østergaard",
        "Yılmaz", "Rossi", "Tanaka", "da Silva"]  # fmt: skip  # noqa: RUF001 (a Turkish dotless i, on purpose)
GENDERS = ["Male", "Female", "M", "F", "Other", "Fimale", ""]
HEADER = ["id", "country", "name", "gender", "age", "address"]


def resident(rng: random.Random, rid: int, changed: bool = False) -> list[str]:
    """One resident; `changed` alters the age and address the way a correction would."""
    country = rng.choice(COUNTRIES)
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    age = str(rng.randint(0, 99))
    street = rng.randint(1, 999)
    address = f'{street} Main St, Apt {rng.randint(1, 60)}, "{rng.choice(LAST)} House"'
    if rng.random() < 0.02:
        address += "\nBuilding B"
    gender = rng.choice(GENDERS)
    roll = rng.random()
    if roll < 0.004:
        country = "XX"  # invalid_country
    elif roll < 0.007:
        age = "n/a"  # invalid_age
    elif roll < 0.01:
        name = ""  # missing_name
    if changed:
        age = str((int(age) + 1) % 100) if age.isdigit() else age
        address = address.replace("Main St", "High St")
    return [str(rid), country, name, gender, age, address]


def write_csv(
    path: Path, rows: int, seed: int, changed_share: float = 0.0, first_id: int = 1
) -> None:
    rng = random.Random(seed)
    change = random.Random(seed + 1)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        for rid in range(first_id, first_id + rows):
            writer.writerow(resident(rng, rid, changed=change.random() < changed_share))


def write_ndjson(csv_path: Path, path: Path) -> None:
    with (
        csv_path.open(newline="", encoding="utf-8") as source,
        path.open("w", encoding="utf-8") as out,
    ):
        for record in csv.DictReader(source):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def drop_every(csv_path: Path, path: Path, nth: int) -> None:
    """`csv_path` without every `nth` record, written as write_csv writes (a record may
    span lines: an address of several)."""
    with (
        csv_path.open(newline="", encoding="utf-8") as source,
        path.open("w", newline="", encoding="utf-8") as out,
    ):
        reader, writer = csv.reader(source), csv.writer(out)
        writer.writerow(next(reader))  # the header
        writer.writerows(row for number, row in enumerate(reader, 1) if number % nth)


def files(folder: Path, rows: int, seed: int = 42) -> dict[str, Path]:
    """The benchmark's input files for `rows`, made once and kept in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    small = min(rows, 20_000)
    paths = {
        "csv": folder / f"residents-{rows}.csv",
        "changed": folder / f"residents-{rows}-changed.csv",
        # as many other residents, with ids after the first file's: all new to the shards
        "others": folder / f"residents-{rows}-others.csv",
        # the changed file less every hundredth record: a snapshot of it deletes 1%
        "snapshot": folder / f"residents-{rows}-snapshot.csv",
        "ndjson": folder / f"residents-{rows}.ndjson",
        "gzip": folder / f"residents-{rows}.csv.gz",
        "small": folder / f"residents-{small}.csv",
    }

    def gzip_csv(out_path: Path) -> None:
        with paths["csv"].open("rb") as source, gzip.open(out_path, "wb") as out:
            shutil.copyfileobj(source, out)

    _make(paths["csv"], lambda path: write_csv(path, rows, seed))
    _make(paths["changed"], lambda path: write_csv(path, rows, seed, changed_share=0.10))
    _make(paths["others"], lambda path: write_csv(path, rows, seed + 2, first_id=rows + 1))
    _make(paths["snapshot"], lambda path: drop_every(paths["changed"], path, 100))
    _make(paths["ndjson"], lambda path: write_ndjson(paths["csv"], path))
    _make(paths["gzip"], gzip_csv)
    _make(paths["small"], lambda path: write_csv(path, small, seed))
    return paths


def _make(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` unless it exists; under another name first, so that an interrupted run
    leaves no half-written file to be taken for a whole one next time."""
    if path.exists():
        return
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)
