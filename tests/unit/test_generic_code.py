"""Generic code names no backend: what lifecycle, k8s, gateway, process, store and core need from
an engine is on the backend contract (backends/base.py), so a third-party backend takes part in
k8s, Ray and fleets the way a built-in one does. import-linter forbids their modules
(pyproject.toml); this reads the code for their names in string literals and imports too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import backends

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ("launcher/lifecycle", "launcher/k8s", "launcher/gateway", "launcher/ui", "launcher/process", "launcher/store",
           "launcher/core", "launcher/bench")  # fmt: skip
# (file, name): a literal that is not the backend. Ollama's native API is an API kind of its own
# (records' `api:`), served by Ollama and by any engine that speaks it.
NOT_THE_BACKEND = {("launcher/core/names.py", "ollama")}


def builtin_names() -> set[str]:
    """The built-ins' registry names and the names of their modules under backends/."""
    found: set[str] = set()
    for entry in backends.entries().values():
        if entry.builtin:
            module = entry.target.partition(":")[0].split(".")
            found |= {entry.name, module[1]}
    return found - {"base", "probes"}


def _docstrings(tree: ast.Module) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, kinds) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}  # fmt: skip


def named_backends(source: str, rel: str, pattern: re.Pattern[str]) -> list[str]:
    """Each string literal (docstrings aside: prose may say what an engine does) and import in
    ``source`` (the file ``rel``) that names a built-in backend, as FILE:LINE text."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            texts = [node.value]
        elif isinstance(node, ast.Import):
            texts = [alias.name.replace(".", " ") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            texts = [(node.module or "").replace(".", " ")] + [alias.name for alias in node.names]
        for text in texts:
            for name in pattern.findall(text):
                if (rel, name) not in NOT_THE_BACKEND:
                    out.append(f"{rel}:{getattr(node, 'lineno', 0)} names {name!r}: {text[:80]!r}")
    return out


def word_pattern(names: set[str]) -> re.Pattern[str]:
    # A whole word: `vllm` in "use -b vllm" or "vllm/vllm-openai", not in VLLM_PORT or ollama_chat.
    return re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")(?![\w-])")


def test_generic_code_names_no_builtin_backend() -> None:
    names = builtin_names()
    assert {"vllm", "ollama", "fastchat", "flask-transformers", "flask-modelscope", "flask_transformers"} <= names
    pattern = word_pattern(names)
    found = [hit for folder in GENERIC for path in sorted((ROOT / folder).rglob("*.py"))
             for hit in named_backends(path.read_text(), path.relative_to(ROOT).as_posix(), pattern)]  # fmt: skip
    assert found == [], "ask the backend contract instead:\n" + "\n".join(found)


def test_the_check_finds_a_name_in_a_literal_and_an_import() -> None:
    """The test above can fail: both kinds of mention are caught, prose and look-alikes are not."""
    sample = ('"""Prose may say vllm."""\nfrom backends.ollama.probes import OllamaVersion\n'
              'HINT = "use -b vllm"\nKEY = "VLLM_PORT ollama_chat"\n')  # fmt: skip
    found = named_backends(sample, "launcher/core/sample.py", word_pattern(builtin_names()))
    assert [hit.split(" names ")[1].split(":")[0] for hit in found] == ["'ollama'", "'vllm'"]
