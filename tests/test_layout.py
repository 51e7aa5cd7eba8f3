"""The package's layout, read from the AST of lib/: imports flow one way, at the top of each
module, and the product never imports the simulator (nor needs its extra, `websockets`)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dhanfeed

LIB = Path(dhanfeed.__file__).resolve().parent

# The simulator and the two programs that exist to run it; everything else is the product.
SIMULATOR_SIDE = ("dhanfeed.sim", "dhanfeed.cli.dhan_sim", "dhanfeed.cli.demo")


def is_product(module: str) -> bool:
    return not any(module == side or module.startswith(side + ".") for side in SIMULATOR_SIDE)


def all_modules() -> list[str]:
    found = pkgutil.walk_packages([str(LIB)], prefix="dhanfeed.")
    return ["dhanfeed", *sorted(info.name for info in found)]


# Third-party libraries that may be imported inside a function: heavy, and needed only on a
# path that many runs never take. Each such import carries a one-line reason as a comment.
LAZY_ALLOWED = {"apprise", "pandas", "pyarrow", "psycopg"}  # all but apprise: optional extras
# The one package module imported lazily: it imports psycopg at its top, and only a
# postgresql:// database needs it (bin/renew_token and bin/status, run by cron, never do).
LAZY_PACKAGE_MODULES = {"dhanfeed.store.postgresql"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports: a dhanfeed module, or a top-level third-party name
    line: int
    in_function: bool
    commented: bool


def source_of(module: str) -> Path:
    relative = Path(*module.split("."))
    package = LIB.parent / relative / "__init__.py"
    return package if package.exists() else LIB.parent / relative.with_suffix(".py")


def is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def targets(node: ast.Import | ast.ImportFrom, module: str, known: set[str]) -> list[str]:
    """`from dhanfeed.sim import tokens` imports the module dhanfeed.sim.tokens."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing package
        parts = module.split(".")
        keep = parts if source_of(module).name == "__init__.py" else parts[:-1]
        base = ".".join(keep[: len(keep) - node.level + 1] + ([base] if base else []))
    found = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
    return found or [base]


def imports_of(module: str, known: set[str]) -> list[Import]:
    text = source_of(module).read_text(encoding="utf-8")
    lines = text.splitlines()
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if is_type_checking_block(child):
                continue  # annotations only: never executed
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in targets(child, module, known):
                    name = target if target.startswith("dhanfeed") else target.split(".")[0]
                    commented = "#" in lines[child.lineno - 1]
                    found.append(Import(module, name, child.lineno, in_function, commented))
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, nested)

    visit(ast.parse(text), False)
    return found


def every_import() -> list[Import]:
    modules = all_modules()
    known = set(modules)
    return [imp for module in modules for imp in imports_of(module, known)]


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in all_modules()}
    for imp in every_import():
        if imp.target in graph and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = package_graph()
    assert "dhanfeed.token_store" in graph["dhanfeed.renewer"]  # the graph is really read
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_no_module_imports_a_package_module_inside_a_function() -> None:
    hidden = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in every_import()
        if imp.in_function
        and imp.target.startswith("dhanfeed")
        and imp.target not in LAZY_PACKAGE_MODULES
    ]
    assert hidden == []


def test_a_lazy_import_is_only_of_a_heavy_optional_library_and_says_why() -> None:
    lazy = [imp for imp in every_import() if imp.in_function]
    assert {imp.target for imp in lazy} <= LAZY_ALLOWED | LAZY_PACKAGE_MODULES
    assert [f"{imp.module}:{imp.line}" for imp in lazy if not imp.commented] == []


def test_product_code_never_imports_the_simulator_or_its_server_library() -> None:
    reaching = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in every_import()
        if is_product(imp.module) and (not is_product(imp.target) or imp.target == "websockets")
    ]
    assert reaching == []


def test_the_import_reader_sees_imports_in_functions_and_skips_type_checking_blocks() -> None:
    imports = {(imp.target, imp.in_function) for imp in imports_of("dhanfeed.alerts", set())}
    assert ("dhanfeed.logs", False) in imports
    assert not any(t == "dhanfeed.config" for t, _ in imports)  # only under TYPE_CHECKING
    lazy = {(imp.target, imp.in_function) for imp in imports_of("dhanfeed.apprise_urls", set())}
    assert ("apprise", True) in lazy


# Importing a name mapped to None in sys.modules fails as if it were not installed.
WITHOUT_WEBSOCKETS = "import sys; sys.modules['websockets'] = None\n"


def run_without_websockets(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_WEBSOCKETS + code],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_product_module_imports_without_the_simulators_extra() -> None:
    product = [m for m in all_modules() if is_product(m)]
    assert "dhanfeed.cli.collector" in product and "dhanfeed.cli.renew_token" in product
    done = run_without_websockets(
        f"import importlib\nfor m in {product!r}: importlib.import_module(m)\nprint('ok')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_simulator_without_its_extra_says_which_extra_to_install_in_one_line() -> None:
    done = run_without_websockets("import runpy; runpy.run_module('dhanfeed.cli.dhan_sim')")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "pip install 'dhanfeed[sim]'" in done.stderr


# Modules that import no other dhanfeed module but each other: anything may use them.
LEAVES = {
    "dhanfeed.errors",
    "dhanfeed.clock",
    "dhanfeed.files",
    "dhanfeed.shield",
    "dhanfeed.run_timer",
    "dhanfeed.instruments",
    "dhanfeed.session",
    "dhanfeed.version",
    "dhanfeed.textfiles",
}


def test_the_leaves_import_nothing_of_the_package_but_other_leaves() -> None:
    graph = package_graph()
    assert {leaf: graph[leaf] - LEAVES for leaf in LEAVES} == {leaf: set() for leaf in LEAVES}


def test_the_cli_is_imported_by_no_other_part_of_the_package() -> None:
    upward = [
        f"{imp.module} imports {imp.target}"
        for imp in every_import()
        if imp.target.startswith("dhanfeed.cli") and not imp.module.startswith("dhanfeed.cli")
    ]
    assert upward == []


def test_each_package_docstring_names_every_module_it_holds() -> None:
    unnamed = []
    for package in [m for m in all_modules() if source_of(m).name == "__init__.py"]:
        doc = ast.get_docstring(ast.parse(source_of(package).read_text())) or ""
        for module in all_modules():
            parent, _, name = module.rpartition(".")
            if parent == package and name not in doc:
                unnamed.append(module)
    assert unnamed == []
