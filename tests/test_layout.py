"""The code base's layering, read from the source with `ast` (nothing is imported):

- no import cycle among core/ modules (function-level imports included), nor among pages/ modules;
- core/ never imports pages/ or app;
- a page imports core/, the page helpers made for sharing (SHARED_PAGE_HELPERS) and its own helper
  modules (pages/<page>_*.py, for the pages in PAGE_FAMILIES), never another page, never app, and
  never a private (underscore) name of another module;
- no module in core/ or pages/ is over MAX_LINES lines.

The checker (import_graph, cycles) is tested first on tiny fake packages written to tmp_path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# Page modules other pages may import: helpers made for sharing, not pages themselves.
SHARED_PAGE_HELPERS = {"pages.checks", "pages.examples", "pages.figures", "pages.inline_svg", "pages.model_picker",
                       "pages.uploads"}
# Pages whose own helper modules (pages/<page>_*.py) they may import.
PAGE_FAMILIES = {"pages.audio", "pages.receptive_field", "pages.recurrence", "pages.sequences", "pages.train"}


# -- the checker ---------------------------------------------------------------------------------


def module_files(root: Path, packages: list[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root/<package> (a package is named by its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` is or lies in (an attribute of it), or None for outside code."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def import_graph(root: Path, packages: list[str]) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, str]]]]:
    """(imports, private): the modules each module imports, anywhere in it, and the underscore names it takes.

    imports maps module -> the known modules it imports (outside code is left out). `from a.b import c`
    is an import of a.b.c when that is a module, else of a.b (c is a name in it); `import a.b.c` is an
    import of a.b.c. Relative imports are resolved. private maps module -> [(imported module, name)]
    for each `from m import _name` and `import m._name` (dunder names are not private).
    """
    modules = module_files(root, packages)
    imports: dict[str, set[str]] = {m: set() for m in modules}
    private: dict[str, list[tuple[str, str]]] = {m: [] for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name, modules)
                    if target:
                        imports[module].add(target)
                    private[module] += [(alias.name, part) for part in alias.name.split(".") if _private(part)]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".") if is_package else module.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join([*here, base] if base else here)
                for alias in node.names:
                    target = _resolve(f"{base}.{alias.name}", modules) if alias.name != "*" else None
                    if target is None or target != f"{base}.{alias.name}":
                        target = _resolve(base, modules)  # a name in base, not a submodule of it
                    if target:
                        imports[module].add(target)
                    if _private(alias.name):
                        private[module].append((base, alias.name))
    return imports, private


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: its strongly connected components with more than one module, or a
    module importing itself; each sorted, the list sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return sorted(found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# -- the checker on fake packages -----------------------------------------------------------------


def test_cycle_through_a_function_level_import_is_found(tmp_path):
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from pkg import c\n    return c\n",
        "pkg/c.py": "import pkg.a\n",
        "pkg/d.py": "from pkg.a import x\n",
    })
    imports, _ = import_graph(root, ["pkg"])
    assert imports["pkg.b"] == {"pkg.c"}  # `from pkg import c`: c is a submodule, not a name in pkg
    assert cycles(imports) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_diamond_is_not_a_cycle(tmp_path):
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/top.py": "from pkg import left, right\n",
        "pkg/left.py": "from pkg.bottom import x\n",
        "pkg/right.py": "from . import bottom\nfrom .bottom import y\n",
        "pkg/bottom.py": "import os\nx = y = 1\n",
    })
    imports, _ = import_graph(root, ["pkg"])
    assert imports["pkg.top"] == {"pkg.left", "pkg.right"}
    assert imports["pkg.right"] == {"pkg.bottom"}
    assert imports["pkg.bottom"] == set()  # outside code is left out
    assert cycles(imports) == []


def test_package_importing_a_name_of_its_submodule_is_not_a_cycle_but_importing_back_is(tmp_path):
    root = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.sub import thing\n",
        "pkg/sub/__init__.py": "from pkg.sub.leaf import thing\n",
        "pkg/sub/leaf.py": "thing = 1\n",
        "pkg/loop.py": "from pkg import thing\n",
        "pkg/other.py": "from pkg.loop import z\nimport pkg.other\n",
    })
    imports, _ = import_graph(root, ["pkg"])
    assert imports["pkg"] == {"pkg.sub"}
    assert imports["pkg.loop"] == {"pkg"}
    assert cycles(imports) == [["pkg.other"]]  # imports itself


def test_private_names_are_found_with_their_module(tmp_path):
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import _hidden as shown, public, __version__\nimport pkg._c\n",
        "pkg/b.py": "_hidden = public = __version__ = 1\n",
        "pkg/_c.py": "",
    })
    _, private = import_graph(root, ["pkg"])
    assert private["pkg.a"] == [("pkg.b", "_hidden"), ("pkg._c", "_c")]


# -- the code base ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, str]]]]:
    return import_graph(ROOT, ["core", "pages"])


def _within(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    """The part of `graph` among the modules of `package`."""
    inside = {m for m in graph if m == package or m.startswith(package + ".")}
    return {m: graph[m] & inside for m in inside}


def test_core_has_no_import_cycle(graph):
    assert cycles(_within(graph[0], "core")) == [], (
        "import cycles in core/ (a module of a package imports the package's bottom modules (registry, stepper, "
        "batch), never the package itself, which imports them all; a function-level import counts too)")


def test_pages_have_no_import_cycle(graph):
    assert cycles(_within(graph[0], "pages")) == []


def test_core_imports_neither_pages_nor_app():
    # Read each core module's import statements: app.py is outside the walked packages.
    upward = {m: sorted({"pages", "app"} & _top_level_imports(path))
              for m, path in module_files(ROOT, ["core"]).items()}
    assert {m: names for m, names in upward.items() if names} == {}


def _top_level_imports(path: Path) -> set[str]:
    """The first component of every module `path` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _may_import(page: str, target: str) -> bool:
    """Whether page module `page` may import page module `target`: a shared helper, or a helper of its own page."""
    if target in SHARED_PAGE_HELPERS:
        return True
    family = next((f for f in PAGE_FAMILIES if page == f or page.startswith(f + "_")), None)
    return family is not None and target.startswith(family + "_")


def test_pages_import_only_core_and_shared_page_helpers(graph):
    wrong = {m: sorted(t for t in targets if t.startswith("pages") and not _may_import(m, t))
             for m, targets in graph[0].items() if m.startswith("pages.")}  # the package itself lists the pages
    outside = {m: sorted({"app", "bench", "scripts", "tests"} & _top_level_imports(path))
               for m, path in module_files(ROOT, ["pages"]).items()}
    assert ({m: t for m, t in wrong.items() if t}, {m: t for m, t in outside.items() if t}) == ({}, {})


def test_pages_import_no_private_name(graph):
    assert {m: names for m, names in graph[1].items() if m.startswith("pages") and names} == {}


def _line_counts() -> dict[str, int]:
    return {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
            for path in module_files(ROOT, ["core", "pages"]).values()}


def test_no_module_in_core_or_pages_is_over_the_line_limit():
    assert {p: n for p, n in _line_counts().items() if n > MAX_LINES} == {}
