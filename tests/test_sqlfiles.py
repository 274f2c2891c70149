"""The SQL catalogue (pipeline.queries): every file of sql/ is declared and used, each
template declares exactly its placeholders, and a wrong entry fails when it is read. No
database needed."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from psycopg import sql

from pipeline import queries
from pipeline.sqlfiles import CatalogueError, Statement, Template, placeholders_of, sql_dir

PACKAGE = Path(queries.__file__).parent
Entry = Statement | Template


def catalogue() -> list[tuple[str, str, Entry]]:
    """(namespace, attribute, entry) for every entry of pipeline.queries."""
    found = []
    for namespace, cls in vars(queries).items():
        if not inspect.isclass(cls) or cls.__module__ != queries.__name__:
            continue
        for attribute, entry in vars(cls).items():
            if isinstance(entry, Statement | Template):
                found.append((namespace, attribute, entry))
    return found


CATALOGUE = catalogue()
ENTRIES = {entry.name: (namespace, attribute, entry) for namespace, attribute, entry in CATALOGUE}


def references() -> set[tuple[str, str]]:
    """Every `NAMESPACE.attribute` written in the package's code, outside the catalogue."""
    found = set()
    for path in PACKAGE.glob("*.py"):
        if path.name == "queries.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                found.add((node.value.id, node.attr))
    return found


def test_every_sql_file_is_in_the_catalogue() -> None:
    on_disk = {
        path.relative_to(sql_dir()).with_suffix("").as_posix()
        for path in sql_dir().rglob("*.sql")
        if path.parent.name != "migrations"
    }
    assert len(on_disk) > 50  # the folder was found and read
    assert on_disk == set(ENTRIES)
    assert len(CATALOGUE) == len(ENTRIES)  # no file twice


def test_every_catalogue_entry_is_used_by_the_code() -> None:
    used = references()
    unused = sorted(f"{ns}.{attr}" for ns, attr, _ in CATALOGUE if (ns, attr) not in used)
    assert unused == []


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_an_entry_is_named_after_its_folder_and_file(name: str) -> None:
    namespace, attribute, _entry = ENTRIES[name]
    folder = name.split("/")[0]
    assert name == f"{folder}/{attribute}"
    assert (getattr(queries, namespace).__doc__ or "").startswith(f"sql/{folder}/:")


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_a_template_declares_exactly_the_placeholders_of_its_file(name: str) -> None:
    entry = ENTRIES[name][2]
    text = (sql_dir() / f"{name}.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    if isinstance(entry, Template):
        assert entry.placeholders
        assert entry.placeholders == placeholders_of(body)
    else:
        assert re.search(r"\{[a-z_]+\}", body) is None


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_an_entry_holds_its_file_without_the_leading_comment(name: str) -> None:
    entry = ENTRIES[name][2]
    text = entry.text if isinstance(entry, Template) else entry.as_string()
    assert text.strip() and not text.startswith("--")
    assert text in (sql_dir() / f"{name}.sql").read_text(encoding="utf-8")


def test_a_misspelt_file_fails_when_the_catalogue_is_read() -> None:
    with pytest.raises(CatalogueError, match=r"load/upsrt\.sql"):
        Statement("load/upsrt")
    with pytest.raises(CatalogueError, match=r"extract/rowz\.sql"):
        Template("extract/rowz", "where")


def test_a_template_declared_with_other_placeholders_fails_when_read() -> None:
    with pytest.raises(CatalogueError, match=r"holds \['condition'\], declared \['conditon'\]"):
        Template("schema/residency_violations", "conditon")
    with pytest.raises(CatalogueError, match="declared"):
        Template("schema/residency_add", "condition")  # `rule` left out


@pytest.mark.parametrize("text", ["WHERE a = {}", "WHERE a = {0}", "'{1,2}' {a", "{a!r}"])
def test_a_template_names_each_placeholder_and_doubles_literal_braces(text: str) -> None:
    with pytest.raises(CatalogueError):
        placeholders_of(text)
    assert placeholders_of("'{{1,2}}' = {a} AND {b} = {a}") == {"a", "b"}


def test_a_file_with_placeholders_is_not_a_statement() -> None:
    with pytest.raises(CatalogueError, match=r"\{condition\} in a Statement"):
        Statement("schema/residency_violations")


def test_a_template_refuses_a_placeholder_missing_or_unknown() -> None:
    template = queries.SCHEMA.residency_add
    with pytest.raises(TypeError, match=r"missing \['rule'\], unknown \[\]"):
        template.format(condition=sql.SQL("true"))
    with pytest.raises(TypeError, match=r"missing \[\], unknown \['extra'\]"):
        template.format(condition=sql.SQL("true"), rule=sql.Literal("x"), extra=sql.SQL("1"))


def test_a_template_is_filled_like_psycopg_fills_its_text() -> None:
    filled = queries.CHECK.between.format(
        column=sql.Identifier("age"), min=sql.Literal(1), max=sql.Literal(9)
    )
    assert filled.as_string() == '"age" NOT BETWEEN 1 AND 9'


def test_a_statement_has_nothing_to_fill() -> None:
    with pytest.raises(TypeError, match=r"load/upsert\.sql is a Statement"):
        queries.LOAD.upsert.format(x=sql.SQL("1"))


def test_every_sql_file_is_ascii() -> None:
    # A shard's database may be of any encoding (LATIN1, say): the server converts every
    # statement into it, comments too, and refuses a character it has no equivalent for.
    found = [
        path.relative_to(sql_dir()).as_posix()
        for path in sorted(sql_dir().rglob("*.sql"))
        if not path.read_bytes().isascii()
    ]
    assert found == []
