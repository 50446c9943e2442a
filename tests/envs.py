"""Client virtual environments the test suite builds for itself (AgentScope 0.1.6, ...).

Each lives under ``.cache/test-envs/NAME`` in the checkout (ignored by git) and is rebuilt when
its requirement list changes. Building is serialised with a file lock so parallel test
processes build it once. Run ``python -m tests.envs NAME`` to build one by hand.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
ENVS_DIR = ROOT / ".cache" / "test-envs"

CLIENT_ENVS: dict[str, list[str]] = {
    # 0.1.6 forgets tqdm in its requirements: `import agentscope` fails without it.
    "agentscope-0.1.6": ["agentscope==0.1.6", "tqdm"],
}


def python_of(name: str) -> Path:
    return ENVS_DIR / name / "bin" / "python"


def ensure(name: str, log=print) -> Path:
    """Build the venv ``name`` if it is missing or stale; return its python."""
    reqs = CLIENT_ENVS[name]
    stamp_text = json.dumps(reqs)
    env_dir = ENVS_DIR / name
    stamp = env_dir / ".modelserve-test-env"
    if stamp.exists() and stamp.read_text() == stamp_text:
        return python_of(name)
    ENVS_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(str(env_dir) + ".lock", timeout=1800):
        if stamp.exists() and stamp.read_text() == stamp_text:
            return python_of(name)
        shutil.rmtree(env_dir, ignore_errors=True)
        t0 = time.monotonic()
        log(f"building test env {name}: {' '.join(reqs)}")
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        proc = subprocess.run(
            [str(python_of(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise RuntimeError(f"pip install {' '.join(reqs)} failed:\n{proc.stderr[-3000:]}")
        stamp.write_text(stamp_text)
        log(f"built {name} in {time.monotonic() - t0:.0f} s")
    return python_of(name)


def digest() -> str:
    return hashlib.sha256(json.dumps(CLIENT_ENVS, sort_keys=True).encode()).hexdigest()[:12]


if __name__ == "__main__":
    for n in sys.argv[1:] or list(CLIENT_ENVS):
        print(ensure(n))
