"""The package's structure: every module imports on its own, no two modules import each other
(not even through a function-level import), and no module outgrows a few hundred lines."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
MAX_LINES = 400  # CONVENTIONS.md: a module does one thing and stays within a few hundred lines


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` (its __init__ included)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports, wherever the import statement is (at
    the top, inside a function, under `if TYPE_CHECKING`): a cycle through a function-level
    import is a cycle the code hides, not one it does not have."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package, up level - 1
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    up = here[: len(here) - node.level + 1]
                    base = ".".join([*up, *([base] if base else [])])
                # `from pipeline import db` imports the module pipeline.db; `from pipeline
                # import to_dataframe` a name of the package itself.
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    imported.add(submodule if submodule in modules else base)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: its strongly connected components of more than one
    module (Tarjan's algorithm), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_module_of_the_package_is_in_an_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import two\n")
    (package / "b.py").write_text("def two():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


# Run in a fresh interpreter: each module is imported with no module of the package loaded
# before it (they are dropped from sys.modules in between), so a module that works only once
# another has been imported first, in the order a test run or the CLI happens to use, fails
# here. Third-party modules stay loaded: one interpreter, not one per module, keeps it quick.
IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name + ": " + traceback.format_exc())
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own() -> None:
    modules = sorted(_modules(PACKAGE))
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *modules], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_module_that_needs_another_imported_first_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text("import pipeline.second\n")
    (package / "second.py").write_text("")
    # Only works once pipeline.first has imported pipeline.second: `pipeline.second` is an
    # attribute of the package from then on.
    (package / "third.py").write_text("import pipeline\nVALUE = pipeline.second\n")
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, "pipeline.first", "pipeline.third"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONSAFEPATH": "1"},
    )
    assert done.returncode == 1
    assert "pipeline.third: " in done.stdout and "pipeline.first" not in done.stdout


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules(PACKAGE).items()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def _imported_after(modules: str, names: set[str]) -> list[str]:
    """Which of `names` a fresh interpreter has imported once it imports `modules`."""
    code = f"import sys; import {modules}; print(sorted(set({sorted(names)!r}) & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(ast.literal_eval(done.stdout.strip()))


def test_the_load_path_does_not_import_pandas() -> None:
    # A load never uses pandas, and pyarrow_for_a_load keeps pyarrow from importing it (0.4 s
    # and 49 MB, measured); a module that makes a pyarrow value from Python objects at
    # import time (pa.array([...])) would import it before that, through pyarrow's check.
    loaded = _imported_after("pipeline.cli, pipeline.cli_load, pipeline.load", {"pandas"})
    assert loaded == []


def test_the_files_of_a_load_are_found_and_hashed_before_pyarrow_is_imported() -> None:
    # `pipeline load` starts hashing its files (pipeline.incoming.FileHashes) before it
    # imports the readers' libraries, so that the hash runs on the core those imports leave
    # idle: pipeline.incoming must not import them itself.
    assert _imported_after("pipeline.cli, pipeline.incoming", {"pyarrow", "numpy"}) == []
