"""The house: layers that never climb, no import circles, package imports at the top of files.

The import graph of ``seq2king/`` is read from the code itself (``ast``), every import
counted, also those inside functions. docs/layout.md draws the same layers.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "seq2king"

# lowest first; a module may import its own layer or any below it, never one above
LAYERS = [
    ("errors",),
    ("fileio",),
    ("integrity", "runtime", "checkpoints"),
    ("genetics",),
    ("model",),
    ("data",),
    ("training",),
    ("analysis",),
    ("audit",),
    ("sweep_table",),
    ("commands", "cli", "conf"),
]
# imports of the package inside a function, each lazy on purpose: the `seq2king` command answers --help and
# runs `simulate` without importing torch, Lightning or msprime for the other subcommands
LAZY = {"seq2king.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module}: in no layer of tests/test_layout.py (add it where it belongs)")


def imports(path: Path):
    """``(imported module, line, inside a function)`` for every import of the package in ``path``."""
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(code: str, here: str, is_package: bool = False):
    tree = ast.parse(code)
    package = here if is_package else here.rpartition(".")[0]
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "seq2king" or name.startswith("seq2king."):
                yield name, node.lineno, id(node) in inside


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PKG.rglob("*.py") if "vendor" not in p.parts}
    edges = {m: set() for m in modules}
    for m, p in modules.items():
        for name, _, _ in imports(p):
            while name not in modules and "." in name:  # `from pkg import name`: the module, not the name
                name = name.rpartition(".")[0]
            if name in modules and name != m and not m.startswith(name + "."):
                edges[m].add(name)
    return edges


def test_no_import_climbs_a_layer():
    climbs = [f"{m} ({layer(m)}) imports {n} ({layer(n)})" for m, deps in graph().items() for n in deps
              if n != "seq2king" and layer(n) > layer(m)]
    assert not climbs, climbs


def test_no_import_circle():
    edges = graph()
    state, circles = {}, []

    def visit(m, path):
        state[m] = "open"
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                circles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not circles, circles


def test_package_imports_sit_at_the_top_of_files():
    inside = [f"{module_name(p)}:{line} imports {name}" for p in PKG.rglob("*.py") if "vendor" not in p.parts
              if module_name(p) not in LAZY for name, line, nested in imports(p) if nested]
    assert not inside, inside


def test_the_checks_see_what_they_look_for():
    """A climb, a relative import and a nested import planted in code are all found."""
    code = "from seq2king.commands import x\nfrom . import king\n\ndef f():\n    from seq2king.audit import y\n"
    found = list(imports_in(code, "seq2king.genetics.m"))
    assert ("seq2king.commands", 1, False) in found and ("seq2king.genetics.king", 2, False) in found
    assert ("seq2king.audit", 5, True) in found
    assert layer("seq2king.commands") > layer("seq2king.genetics.m")
