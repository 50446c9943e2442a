"""A backend from an installed out-of-tree package (tests/plugin: modelserve-echo) is found
through the `modelserve.backends` entry-point group, listed like the built-ins, configured by
its own YAML section, served through with `modelserve up -b echo`, run as fleet members behind
the gateway, and rendered for Kubernetes (manifests valid under kubernetes-validate --strict)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd
from tests.k8s_cases import K8S_VERSION, validate

ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """modelserve-echo built and installed (pip, the way a user installs a plugin) into a folder
    of its own, so the project's venv is left as it was."""
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(ROOT / "tests" / "plugin", work / "src")  # pip builds in the source tree
    site = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
                           "--disable-pip-version-check", "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert list(site.glob("modelserve_echo-0.1.0.dist-info/entry_points.txt"))
    return site


@pytest.fixture()
def ms(cli_env: dict[str, str], plugin_site: Path, tmp_path: Path) -> Run:
    work = tmp_path / "work"
    work.mkdir()
    env = dict(cli_env, PYTHONPATH=str(plugin_site))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=env, cwd=work,
                              timeout=120)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def test_the_plugin_is_listed_like_the_builtins(ms: Run) -> None:
    rows = {r["name"]: r for r in json.loads(ms("backends", "--json").stdout)["backends"]}
    assert {"flask-transformers", "vllm", "fastchat", "ollama", "flask-modelscope", "echo"} <= set(rows)
    echo, builtin = rows["echo"], rows["flask-transformers"]
    assert set(echo) == set(builtin)  # the same fields, filled the same way
    assert (echo["distribution"], builtin["distribution"]) == ("modelserve-echo", "modelserve")
    assert echo["available"] is True and echo["capabilities"] == ["openai"]
    text = ms("backends").stdout
    # The matrix row reads like a built-in's: name, here, devices, capabilities (embed and rerank: no), who
    # registered it.
    # A plugin that serves the OpenAI API gets Messages and Responses through modelserve's front.
    assert any(line.split() == ["echo", "yes", "cpu", "yes", "-", "-", "-", "-", "-", "-", "-", "translated", "translated",
                                "modelserve-echo"] for line in text.splitlines()), text  # fmt: skip


def test_up_serves_through_the_plugin_with_its_own_section(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    spec = tmp_path / "echo.yaml"
    spec.write_text(f"model: parrot\nbackend: echo\nname: parrot\nport: {port}\necho:\n  prefix: 'squawk: '\n")
    up = ms("up", "-c", str(spec), "--api-key", "s3cret")
    assert "ready: parrot answered" in up.stdout
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps({"model": "parrot", "messages": [{"role": "user", "content": "hello"}]}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["choices"][0]["message"]["content"] == "squawk: hello"
        # Anthropic Messages (its x-api-key) and OpenAI Responses, translated by the front on the same port.
        ask = {"model": "parrot", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages", data=json.dumps(ask).encode(),
                                     headers={"Content-Type": "application/json", "x-api-key": "s3cret"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["content"] == [{"type": "text", "text": "squawk: hello"}]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/responses",
                                     data=json.dumps({"model": "parrot", "input": "hello"}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["output"][0]["content"][0]["text"] == "squawk: hello"
        assert "surfaces:   Anthropic Messages translated (front), OpenAI Responses translated (front)" in up.stdout
        entries = json.loads((tmp_path / "work" / "model_config.json").read_text())
        assert [e["config_name"] for e in entries] == ["parrot-openai"]
        (row,) = json.loads(ms("status", "--json").stdout)["deployments"]
        assert (row["backend"], row["state"], row["health"]) == ("echo", "running", "ok")
    finally:
        ms("down", "parrot")
    assert ports.is_free("127.0.0.1", port)


def test_a_wrong_key_in_the_plugin_section_is_refused_with_its_line(ms: Run, tmp_path: Path) -> None:
    spec = tmp_path / "echo.yaml"
    spec.write_text("model: parrot\nbackend: echo\necho:\n  prefx: '> '\n")
    bad = ms("up", "-c", str(spec), check=False)
    assert bad.returncode == 3
    assert f"{spec}:4 echo.prefx: unknown key (did you mean 'prefix'?)" in bad.stderr


def chat(base: str, model: str, text: str, key: str | None = None) -> dict[str, object]:
    req = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        reply: dict[str, object] = json.loads(resp.read())
        return reply


def test_plugin_members_run_behind_the_fleet_gateway(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    fleet = tmp_path / "birds.yaml"
    fleet.write_text(f"name: birds\ngateway: {{port: {port}}}\ndeployments:\n"
                     "  - {name: parrot, model: polly, backend: echo, echo: {prefix: 'squawk: '}}\n"
                     "  - {name: myna, model: myna, backend: echo, served_model_name: myna-v1}\n")  # fmt: skip
    ms("up", "-c", str(fleet))
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{base}/v1/models", timeout=10) as resp:
            assert [m["id"] for m in json.loads(resp.read())["data"]] == ["parrot", "myna-v1"]
        # The gateway starts each member on its first request (`modelserve up` of the member file).
        parrot = chat(base, "parrot", "hello")
        assert parrot["model"] == "parrot"  # the member serves its model under the id clients use
        assert parrot["choices"][0]["message"]["content"] == "squawk: hello"  # type: ignore[index]
        assert chat(base, "myna-v1", "hi")["choices"][0]["message"]["content"] == "echo: hi"  # type: ignore[index]
        rows = {r["name"]: r for r in json.loads(ms("status", "--json").stdout)["deployments"]}
        assert (rows["birds"]["backend"], rows["birds"]["state"]) == ("gateway", "running")
        for member in ("birds.parrot", "birds.myna"):
            assert (rows[member]["backend"], rows[member]["state"], rows[member]["health"]) == ("echo", "running", "ok")
        assert rows["birds.parrot"]["served_model_name"] == "parrot"
    finally:
        ms("down", "birds")
    assert json.loads(ms("status", "--json").stdout)["deployments"] == []
    assert ports.is_free("127.0.0.1", port)


def test_k8s_render_runs_the_plugin_in_a_pod(ms: Run, tmp_path: Path) -> None:
    spec = tmp_path / "parrot.yaml"
    spec.write_text("model: polly\nbackend: echo\nname: parrot\nport: 8000\napi_key: sk-echo-k8s\n"
                    "echo:\n  prefix: 'squawk: '\n")  # fmt: skip
    out = tmp_path / "k8s"
    ms("k8s", "render", "-c", str(spec), "-o", str(out), "--namespace", "birds")
    manifests = sorted(out.iterdir())
    assert [p.name for p in manifests] == ["parrot-agent-config.yaml", "parrot-api-key-secret.yaml",
                                           "parrot-deployment.yaml", "parrot-models-pvc.yaml", "parrot-service.yaml"]
    result = validate(manifests)
    assert result.returncode == 0 and result.stdout.count(f"against version {K8S_VERSION[:4]}") == 5, result.stdout
    for path in manifests:
        assert "sk-echo-k8s" not in path.read_text(), path.name  # only base64 in the Secrets
    pod = yaml.safe_load((out / "parrot-deployment.yaml").read_text())["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["image"] == "modelserve-echo:0.1.0"  # the plugin's Container
    assert server["command"] == ["python3", "-m", "modelserve_echo.server", "--host", "0.0.0.0", "--port", "8000",
                                 "--served-model-name", "polly", "--prefix", "squawk: "]  # fmt: skip
    key = next(e for e in server["env"] if e["name"] == "ECHO_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "parrot-api-key", "key": "api-key"}
    # With a key the kubelet asks the open health path the plugin declared.
    assert server["startupProbe"]["httpGet"]["path"] == server["readinessProbe"]["httpGet"]["path"] == "/health"
    env_lines = ms("config", "parrot", "-f", "openai-env").stdout
    assert env_lines.startswith("OPENAI_BASE_URL=http://parrot.birds.svc.cluster.local:8000/v1\n")
