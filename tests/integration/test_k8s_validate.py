"""Every manifest `modelserve k8s render -o DIR` writes passes `kubernetes-validate --strict`
against a pinned Kubernetes version (the schemas ship inside the package: no network), and
`modelserve config NAME` then hands agents the Services' URLs. Both programs run for real."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_cases import API_KEY, CASES, K8S_VERSION, Case, validate, write_spec


def cli(args: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def render_to(case: Case, root: Path, env: dict[str, str]) -> tuple[Path, list[Path]]:
    spec = write_spec(case, root)
    out = root / "k8s"
    cli(["k8s", "render", "-c", str(spec), "-o", str(out), "--namespace", "models",
         *(["--kustomize"] if case.kustomize else [])], env)  # fmt: skip
    return out, sorted(p for p in out.iterdir() if p.name != "kustomization.yaml")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_rendered_manifest_is_valid(case: Case, tmp_path: Path, cli_env: dict[str, str]) -> None:
    out, manifests = render_to(case, tmp_path, cli_env)
    result = validate(manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and " passed " in line]
    # One line per manifest, each against the pinned version: none skipped as an unknown kind.
    assert len(passed) == len(manifests) and all(f"against version {K8S_VERSION[:4]}" in line for line in passed)
    assert "WARN" not in result.stdout
    for path in manifests:  # Secrets are readable by their owner only
        kind = yaml.safe_load(path.read_text())["kind"]
        assert stat.S_IMODE(path.stat().st_mode) == (0o600 if kind == "Secret" else 0o644), path.name
    if case.kustomize:
        kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
        assert kustomization["kind"] == "Kustomization"
        assert sorted(kustomization["resources"]) == [p.name for p in manifests]


def test_the_validator_rejects_what_strict_forbids(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The check above can fail: a field the API does not have is an error under --strict."""
    _, manifests = render_to(CASES[0], tmp_path, cli_env)
    deployment = next(p for p in manifests if p.name.endswith("-deployment.yaml"))
    doc = yaml.safe_load(deployment.read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["failureThresold"] = 3  # a typo
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    result = validate([broken])
    assert result.returncode == 1 and "did not validate" in result.stdout and "failureThresold" in result.stdout


def test_config_after_a_render_uses_the_service_urls(tmp_path: Path, cli_env: dict[str, str]) -> None:
    render_to(CASES[4], tmp_path / "fleet", cli_env)
    env_lines = cli(["config", "team", "--member", "llama-big", "-f", "openai-env"], cli_env)
    assert env_lines.stdout == "OPENAI_BASE_URL=http://team-big.models.svc.cluster.local:8000/v1\nOPENAI_API_KEY=EMPTY\n"
    assert "rendered for Kubernetes (namespace models)" in env_lines.stderr
    render_to(CASES[3], tmp_path / "keyed", cli_env)
    entries = json.loads(cli(["config", "smol-secure", "--k8s", "-f", "agentscope"], cli_env).stdout)
    assert [e["config_name"] for e in entries] == ["smol-secure-post", "smol-secure-openai"]
    assert entries[1]["api_key"] == API_KEY  # the agent needs it; `config` prints it as for a local deployment
    assert entries[1]["client_args"]["base_url"] == "http://smol-secure.models.svc.cluster.local:8080/v1/"
    written = tmp_path / "model_config.json"
    cli(["config", "smol-secure", "-f", "agentscope", "--write", str(written)], cli_env)
    assert json.loads(written.read_text()) == entries
    # Nothing runs here: status lists no deployment, and `config --k8s` of an unrendered name fails.
    status = json.loads(cli(["status", "--json", "--no-probe"], cli_env).stdout)
    assert status["deployments"] == []
    missing = cli(["config", "nothing-here", "--k8s", "-f", "agentscope"], cli_env, check=False)
    assert missing.returncode == 10 and "modelserve k8s render" in missing.stderr


def test_printed_stream_is_the_same_manifests(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """Without -o: one multi-document stream for `kubectl apply -f -`, the same objects as the files."""
    _, manifests = render_to(CASES[3], tmp_path, cli_env)
    printed = cli(["k8s", "render", "-c", str(tmp_path / "deployment.yaml"), "--namespace", "models"], cli_env).stdout
    stream = tmp_path / "stream.yaml"
    stream.write_text(printed)
    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    from_files = [yaml.safe_load(p.read_text()) for p in manifests]
    assert sorted(yaml.safe_load_all(printed), key=key) == sorted(from_files, key=key)
    result = validate([stream])
    assert result.returncode == 0 and result.stdout.count(" passed ") == len(manifests), result.stdout
    usage = cli(["k8s", "render", "-c", str(stream), "--kustomize"], cli_env, check=False)
    assert usage.returncode == 2 and "pass -o DIR" in usage.stderr
