"""`make lint`'s checks that no linter covers: module and function sizes, and import cycles.

    python -m tests.layout      # exit 1 and one line per problem when something is off

- a module in launcher/, backends/ or surfaces/ longer than MAX_MODULE lines;
- a function longer than MAX_FUNCTION lines without a reason at its top (a ``# Long: ...``
  comment, or "Long:" in its docstring);
- an import cycle among our modules (grimp's graph, the one import-linter builds);
- a module or package name used twice for different things (``rendered.py`` for a renderer's
  File, for k8s records and for a client-config result): a name says what its module holds, so
  ``from launcher.x import name`` reads the same everywhere. ``SAME_MEANING`` lists the names
  that do mean one thing wherever they appear;
- a package or module the README's "How the code is laid out" does not name (it follows the tree).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("launcher", "backends", "surfaces")
MAX_MODULE = 400
MAX_FUNCTION = 60
# Names that mean the same thing in each place they appear.
SAME_MEANING = {
    "__init__": "a package", "__main__": "a program's entry",
    "app": "a server process's web application (the gateway's aiohttp app, the built-in server's Flask app)",
    "errors": "a program's one error family (the launcher's exit codes, the built-in server's API errors)",
    "metrics": "a server process's Prometheus metrics (the gateway's, the built-in server's)",
    "probes": "readiness probes a backend's plan uses (the shared library, Ollama's native-API ones)",
    "sse": "server-sent events: how a surface's frames are written (the built-in server's, the translator's)",
}
# The README describes the built-in server room by room (its folders), not module by module.
ROOMS_ONLY = "backends/builtin_server/"


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def long_modules() -> list[str]:
    out = []
    for path in _sources():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE:
            out.append(f"{path.relative_to(ROOT)}: {lines} lines (more than {MAX_MODULE}); split it")
    return out


def _says_why(node: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> bool:
    doc = ast.get_docstring(node) or ""
    top = source[node.body[0].lineno - 1 : node.body[0].lineno + 2]
    return "Long:" in doc or any(line.strip().startswith("# Long:") for line in top)


def long_functions() -> list[str]:
    out = []
    for path in _sources():
        text = path.read_text()
        source = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION and not _says_why(node, source):
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines (more than "
                               f"{MAX_FUNCTION}) and no `# Long:` reason at its top")  # fmt: skip
    return out


def import_cycles() -> list[str]:
    """Strongly connected groups of modules (Tarjan), each reported once."""
    graph = grimp.build_graph(*PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.find_modules_directly_imported_by(module)):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return [f"import cycle: {' <-> '.join(group)}" for group in cycles]


def repeated_names() -> list[str]:
    """Module and package names that occur more than once, unless listed in SAME_MEANING."""
    where: dict[str, list[str]] = defaultdict(list)
    for path in _sources():
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py":
            where[path.parent.name].append(rel.parent.as_posix() + "/")
        where[path.stem].append(rel.as_posix())
    return [f"module name {name!r} means different things in {', '.join(sorted(paths))}: name each for what it "
            f"holds (or add it to SAME_MEANING in tests/layout.py with the one meaning)"
            for name, paths in sorted(where.items()) if len(paths) > 1 and name not in SAME_MEANING]  # fmt: skip


def unexplained() -> list[str]:
    """Packages (as ``path/``) and modules (as ``name.py``; the built-in server's rooms only) the
    README's layout section leaves out."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How the code is laid out", 1)[-1].split("\n## ", 1)[0]
    out = []
    for path in _sources():
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py":
            if rel.parent.as_posix() not in PACKAGES and f"{rel.parent.name}/`" not in section:
                out.append(f"README: the layout section does not name the package {rel.parent.as_posix()}/")
        elif rel.as_posix().startswith(ROOMS_ONLY):
            continue
        elif not re.search(rf"[`/]{re.escape(path.name)}`", section):
            out.append(f"README: the layout section does not name {rel.as_posix()}")
    return out


def main() -> int:
    problems = [*long_modules(), *long_functions(), *import_cycles(), *repeated_names(), *unexplained()]
    for line in problems:
        print(line)
    print(f"layout: {len(problems)} problem(s) in {len(list(_sources()))} modules", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
