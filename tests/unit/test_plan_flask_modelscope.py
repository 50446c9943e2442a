"""Flask+ModelScope: the built-in server with the modelscope loader; `-m` looked up in the
ModelScope cache (as modelscope 1.40.2 lays it out) before the HF cache; a typo fails at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import backends
from backends.flask_modelscope import FlaskModelScopeBackend
from backends.flask_transformers import FlaskTransformersBackend
from launcher import devices
from launcher.core.deployment import Deployment
from launcher.models import find_in_modelscope_cache
from tests.e2e.conftest import modelserve_cmd
from tests.golden import assert_golden
from tests.unit.plans import LOCAL, REMOTE, gpu, render


def model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_cpu_default_uses_the_modelscope_loader() -> None:
    plan, text = render("flask-modelscope", Deployment(model=LOCAL.reference))
    assert_golden("plans/flask-modelscope/cpu.txt", text)
    argv = plan.processes[0].argv
    assert argv[argv.index("--loader") + 1] == "modelscope"
    assert plan.backend == "flask-modelscope"
    assert [c.kind for c in plan.clients] == ["post_api_chat", "openai_chat"]


def test_one_gpu_with_a_key() -> None:
    dplan = devices.DevicePlan("cuda", (gpu(2),), "test")
    dep = Deployment(model=REMOTE.reference, api_key="s3cret", served_model_name="llama")
    plan, text = render("flask-modelscope", dep, REMOTE, dplan)
    assert_golden("plans/flask-modelscope/gpu1-remote-key.txt", text)
    assert all("s3cret" not in arg for arg in plan.processes[0].argv)


def test_registered_and_a_subclass_of_the_transformers_backend() -> None:
    backend = backends.get("flask-modelscope")
    assert isinstance(backend, FlaskModelScopeBackend) and isinstance(backend, FlaskTransformersBackend)
    assert "modelscope" in backend.requires and backend.loader == "modelscope"


def test_modelscope_cache_comes_before_the_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    snap = model_folder(tmp_path / "hf" / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc")
    dep = Deployment(model="Qwen/Qwen2.5-0.5B-Instruct", backend="flask-modelscope")
    backend = FlaskModelScopeBackend()
    assert backend.resolve_model(dep, prepare=False, progress=print).kind == "hf-cache"  # only HF has it

    ms = model_folder(tmp_path / "ms" / "models" / "Qwen" / "Qwen2___5-0___5B-Instruct")
    found = backend.resolve_model(dep, prepare=False, progress=print)
    assert (found.kind, found.path, found.served_name) == ("modelscope-cache", str(ms), "Qwen/Qwen2.5-0.5B-Instruct")
    # The transformers backend keeps preferring the HF cache.
    assert FlaskTransformersBackend().resolve_model(dep, prepare=False, progress=print).kind == "hf-cache"


def test_the_snapshot_layout_of_modelscope_1_40(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    snapshots = tmp_path / "ms" / "models" / "org--Tiny-2.5B" / "snapshots"
    model_folder(snapshots / "v1.0")
    master = model_folder(snapshots / "master")
    assert find_in_modelscope_cache("org/Tiny-2.5B") == master
    found = FlaskModelScopeBackend().resolve_model(Deployment(model="org/Tiny-2.5B"), prepare=False, progress=print)
    assert (found.kind, found.path) == ("modelscope-cache", str(master))


def test_default_root_without_modelscope_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSCOPE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    old_sdk = model_folder(tmp_path / ".cache" / "modelscope" / "hub" / "models" / "org" / "Old-1___0")
    assert find_in_modelscope_cache("org/Old-1.0") == old_sdk
    new_sdk = model_folder(tmp_path / ".cache" / "modelscope" / "models" / "org--New-1.0" / "snapshots" / "master")
    assert find_in_modelscope_cache("org/New-1.0") == new_sdk


def test_the_lookup_agrees_with_modelscope_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """modelscope's own offline lookup (snapshot_download with local_files_only) finds the same
    folders: the layouts above are the ones modelscope 1.40.2 reads."""
    pytest.importorskip("modelscope")
    cache = tmp_path / "ms"
    legacy = model_folder(cache / "models" / "myorg" / "Smol-0___1B")
    snapshot = model_folder(cache / "models" / "other--Tiny-2.5B" / "snapshots" / "master")
    code = ("import json, sys\nfrom modelscope import snapshot_download\n"
            "print(json.dumps([snapshot_download(m, local_files_only=True) for m in sys.argv[1:]]))")  # fmt: skip
    env = {"MODELSCOPE_CACHE": str(cache), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code, "myorg/Smol-0.1B", "other/Tiny-2.5B"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = [Path(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    ours = [find_in_modelscope_cache("myorg/Smol-0.1B"), find_in_modelscope_cache("other/Tiny-2.5B")]
    assert theirs == ours == [legacy, snapshot]


def test_a_typo_in_the_path_fails_at_once(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """modelscope would take the missing path for a hub ID and retry modelscope.cn for ~25 s; the
    launcher resolves the reference first, so a typo fails at once with exit code 4 (the bound
    leaves room for a loaded machine, and still tells a check from ~25 s of retries)."""
    typo = tmp_path / "smollm2-135m-instrcut"
    started = time.monotonic()
    proc = subprocess.run([*modelserve_cmd(), "up", "-b", "flask-modelscope", "-m", str(typo), "-p", "18999",
                           "--agentscope-config", str(tmp_path / "model_config.json")],
                          capture_output=True, text=True, env=cli_env, timeout=60, cwd=tmp_path)  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 4, proc.stderr
    assert f"model '{typo}' is not an existing folder" in proc.stderr
    assert elapsed < 10.0, f"took {elapsed:.1f} s"
    assert not (tmp_path / "model_config.json").exists()
