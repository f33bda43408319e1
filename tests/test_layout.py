"""The shape of ``crawler/``: imports point down the layers, no circle, rooms of a bounded size.

Read from the source with :mod:`ast` (every ``import``, including those inside functions, which
is where the lazy ones live), so nothing is imported to check it. The layers are DESIGN §3's
package map; docs/architecture.md draws them. A package may import its own modules and anything
in a layer below its own; the two stage packages on one layer (``fetch`` and ``parse``) do not
import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CRAWLER = ROOT / "crawler"

VALUES = frozenset({"urls", "records", "errors", "config", "checks", "seeds", "schedule", "clock"})
"""The pure values at the top of ``crawler/``: no I/O, imported by everyone, importing no stage."""

LAYERS: dict[str, int] = {
    **dict.fromkeys(VALUES, 0),
    "models": 1,
    "store": 2,
    "fetch": 2,
    "parse": 2,
    "tools": 3,
    "run": 3,
    "commands": 4,
    "__main__": 5,
}
"""Each unit's layer: it may import units of a lower layer (and its own modules), never higher."""

FORBIDDEN: dict[str, frozenset[str]] = {
    "tools": frozenset({"run", "fetch", "parse"}),  # the reading tools only read the database
    "run": frozenset({"tools"}),
}
"""Units on a higher layer that still must not import these lower or sibling ones."""

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LONG_FUNCTION_LINES = 50
MAX_LONG_FUNCTIONS = 5
MAX_TOP_LEVEL_MODULES = 12


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of ``crawler`` and ``models``."""
    for package in ("crawler", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports(name: str, path: Path) -> set[str]:
    """The dotted names of ``crawler``/``models`` modules (or names in them) ``path`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found.update(f"{base}.{a.name}" for a in node.names)
            found.add(base)
    return {m for m in found if m.split(".")[0] in ("crawler", "models")}


def unit(name: str) -> str:
    """The layering unit of a module: its package under ``crawler/``, or its value module."""
    parts = name.split(".")
    if parts[0] == "models":
        return "models"
    if len(parts) == 1:
        return "crawler"  # the package itself (``__version__``)
    return parts[1]


GRAPH: dict[str, set[str]] = {name: imports(name, path) for name, path in modules()}
KNOWN = set(GRAPH)


def resolve(target: str) -> str | None:
    """The module a dotted import names (``crawler.store.db.open_database``:
    ``crawler.store.db``)."""
    while target and target not in KNOWN:
        target = target.rpartition(".")[0]
    return target or None


def test_every_unit_has_a_layer() -> None:
    units = {unit(name) for name in GRAPH} - {"crawler"}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        src = unit(name)
        if src == "crawler":
            continue
        for target in targets:
            module = resolve(target)
            if module is None or module == "crawler":
                continue
            dst = unit(module)
            if dst == src or (src in VALUES and dst in VALUES):
                continue  # within a unit, or among the values (the circle test covers those)
            if LAYERS[dst] >= LAYERS[src] or dst in FORBIDDEN.get(src, ()):
                wrong.append(f"{name} imports {module} ({src} → {dst})")
    assert not wrong, "\n".join(sorted(wrong))


def test_models_never_import_crawler() -> None:
    wrong = [
        f"{name} imports {t}"
        for name, targets in GRAPH.items()
        if name.startswith("models")
        for t in targets
        if t.startswith("crawler")
    ]
    assert not wrong


def test_no_import_circle() -> None:
    """No module reaches itself through imports, lazy ones included."""
    edges = {
        name: {m for t in targets if (m := resolve(t)) and m != name and m != "crawler"}
        for name, targets in GRAPH.items()
    }
    # A package's ``__init__`` runs before its modules: importing ``a.b`` imports ``a`` first.
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        if node in stack:
            circle = [*stack[stack.index(node) :], node]
            pytest.fail("import circle: " + " → ".join(circle))
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        stack.pop()
        done.add(node)

    for name in sorted(edges):
        visit(name)


def test_every_package_says_its_job_and_what_it_must_not_import() -> None:
    for init in sorted(CRAWLER.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert len(doc.splitlines()) >= 2, f"{init}: say the package's job"
        assert "Must not import" in doc, f"{init}: say what the package must not import"


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _functions() -> Iterator[tuple[int, str]]:
    for path in sorted(CRAWLER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                yield (
                    node.end_lineno - start + 1,
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.name}",
                )


def test_no_module_over_the_limit() -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in sorted(CRAWLER.rglob("*.py"))
        if (n := _lines(p)) > MAX_MODULE_LINES
    ]
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_functions_stay_short() -> None:
    sizes = sorted(_functions(), reverse=True)
    too_long = [f"{where}: {n}" for n, where in sizes if n > MAX_FUNCTION_LINES]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
    long = [f"{where}: {n}" for n, where in sizes if n > LONG_FUNCTION_LINES]
    assert len(long) <= MAX_LONG_FUNCTIONS, f"more than {MAX_LONG_FUNCTIONS} over 50: {long}"


def test_few_modules_at_the_top() -> None:
    top = sorted(p.name for p in CRAWLER.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    values = {p.removesuffix(".py") for p in top} - {"__init__", "__main__"}
    assert values <= VALUES, f"only the pure values live at the top: {sorted(values - VALUES)}"
