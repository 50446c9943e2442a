"""Client virtual environments the test suite builds for itself (AgentScope 0.1.6, ...).

Each lives under ``.cache/test-envs/NAME`` in the checkout (ignored by git) and is rebuilt when
its requirement list changes. Building is serialised with a file lock so parallel test
processes build it once. Run ``python -m tests.envs NAME`` to build one by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from launcher.store.files import locked

ROOT = Path(__file__).resolve().parent.parent
ENVS_DIR = ROOT / ".cache" / "test-envs"

CLIENT_ENVS: dict[str, list[str]] = {
    # 0.1.6 forgets tqdm in its requirements: `import agentscope` fails without it.
    "agentscope-0.1.6": ["agentscope==0.1.6", "tqdm", "ollama==0.6.3"],
    # 1.0.21: the unpinned mcp resolves to 2.x, which lacks streamablehttp_client (import fails);
    # greenlet and tqdm are imported but not required. ollama: OllamaChatModel needs it. openai<2:
    # with 3.x its stream parser reads `"data" in delta.audio` while audio is None and raises on
    # every streamed reply (shared/reference/agents-tools.md).
    "agentscope-1.0.21": ["agentscope==1.0.21", "mcp<2", "greenlet", "tqdm", "ollama==0.6.3", "openai<2"],
    # The same, with the vector store AgentScope's RAG examples use (its own "qdrant" extra's pin),
    # for an agent with a knowledge base; a separate env, so the one above is not rebuilt.
    "agentscope-1.0.21-rag": ["agentscope==1.0.21", "mcp<2", "greenlet", "tqdm", "ollama==0.6.3", "openai<2",
                              "qdrant-client==1.15.1"],
    # 2.0.11 pins certifi beyond the newest one the index offers: see RELAXED. ollama: its
    # "ollama" extra (an extra of agentscope itself would pull the certifi pin back in).
    "agentscope-2.0.11": ["agentscope==2.0.11", "ollama==0.6.3"],
    # The Anthropic and OpenAI SDKs for Messages and Responses (tests/e2e/test_surfaces*.py): the newest
    # releases the index here offers; anthropic 2.17 is also what agentscope 1.0.21 pulls in.
    "sdk-surfaces": ["anthropic==2.17.0", "openai==3.63.0"],
    # The OpenAI Agents SDK, for the config `modelserve config -f openai-agents` renders.
    "openai-agents-0.24.0": ["openai-agents==0.24.0"],
    # Pulls jupyter, spacy, llama-index, langchain, transformers (no torch): ~7 minutes.
    "modelscope-agent-0.7.2": ["modelscope-agent==0.7.2"],
    # The live single-node Ray cluster (tests/integration/test_ray_cluster.py): plain ray, no
    # dashboard extra (`ray start --head --include-dashboard=false` needs nothing more).
    "ray-2.60.0": ["ray==2.60.0"],
}

# Requirements a package pins beyond what the package index offers, per env: NAME -> {the
# required distribution: the requirement to use instead}. Such an env is built in two steps:
# its packages with --no-deps, then their own requirement lists (markers evaluated, extras left
# out) with these replaced; pip warns about the conflict and goes on.
RELAXED: dict[str, dict[str, str]] = {
    # agentscope 2.0.11 requires certifi>=2026.10.19; the index here offers up to 2026.10.18.
    "agentscope-2.0.11": {"certifi": "certifi"},
}

# Prints the requirements of the distributions named in argv[2:], with argv[1] (JSON) replacing
# some; runs inside the env (pip's vendored `packaging` is always there).
_REQUIREMENTS_OF = """
import importlib.metadata as m, json, sys
from pip._vendor.packaging.requirements import Requirement
relaxed, names = json.loads(sys.argv[1]), sys.argv[2:]
for name in names:
    for line in m.requires(name) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        print(relaxed.get(req.name, line.split(";")[0]))
"""


def python_of(name: str) -> Path:
    return ENVS_DIR / name / "bin" / "python"


def ensure(name: str, log=print) -> Path:
    """Build the venv ``name`` if it is missing or stale; return its python."""
    reqs = CLIENT_ENVS[name]
    stamp_text = json.dumps(reqs) if name not in RELAXED else json.dumps([reqs, RELAXED[name]])
    env_dir = ENVS_DIR / name
    stamp = env_dir / ".modelserve-test-env"
    if stamp.exists() and stamp.read_text() == stamp_text:
        return python_of(name)
    ENVS_DIR.mkdir(parents=True, exist_ok=True)
    with locked(env_dir.with_name(env_dir.name + ".lock"), timeout=1800):
        if stamp.exists() and stamp.read_text() == stamp_text:
            return python_of(name)
        shutil.rmtree(env_dir, ignore_errors=True)
        t0 = time.monotonic()
        log(f"building test env {name}: {' '.join(reqs)}")
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        for step in _install_steps(name, reqs):
            proc = subprocess.run([str(python_of(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   *step], capture_output=True, text=True)  # fmt: skip
            if proc.returncode != 0:
                shutil.rmtree(env_dir, ignore_errors=True)
                raise RuntimeError(f"pip install {' '.join(step)} failed:\n{proc.stderr[-3000:]}")
        stamp.write_text(stamp_text)
        log(f"built {name} in {time.monotonic() - t0:.0f} s")
    return python_of(name)


def _install_steps(name: str, reqs: list[str]) -> Iterator[list[str]]:
    """pip install argument lists, run in order (a generator: a step may read what the previous
    one installed)."""
    if name not in RELAXED:
        yield reqs
        return
    yield ["--no-deps", *reqs]
    names = [re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0] for r in reqs]
    listed = subprocess.run([str(python_of(name)), "-c", _REQUIREMENTS_OF, json.dumps(RELAXED[name]), *names],
                            capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    yield sorted({line for line in listed if line.strip()})


def digest() -> str:
    return hashlib.sha256(json.dumps(CLIENT_ENVS, sort_keys=True).encode()).hexdigest()[:12]


if __name__ == "__main__":
    for n in sys.argv[1:] or list(CLIENT_ENVS):
        print(ensure(n))
