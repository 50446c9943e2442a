"""Flask+ModelScope for real: `modelserve up -b flask-modelscope` loads SmolLM2 with modelscope's
Auto classes -> the real AgentScope 0.1.6 client replies through both written entries -> `down`
leaves no process behind; and an ORG/NAME found in a ModelScope cache laid out the way modelscope
1.40.2 lays it out is served from there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import ask_agentscope
from tests.procs import with_marker

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("cleanup_deployments")]

QUESTION = "What is the capital of France?"




@pytest.fixture(autouse=True)
def _needs_modelscope() -> None:
    pytest.importorskip("modelscope", reason="the modelscope extra is not installed (pip install -e '.[modelscope]')")


@pytest.fixture()
def greedy_spec(tmp_path: Path) -> Path:
    # Greedy entries: a 135M model sampling at 0.7 rambles, and the test wants a checkable answer.
    spec = tmp_path / "ms.yaml"
    spec.write_text("backend: flask-modelscope\ndevice: cpu\nthreads: 1\nenv:\n  OMP_NUM_THREADS: '1'\n"
                    "agentscope:\n  temperature: 0\n  max_tokens: 48\n")  # fmt: skip
    return spec


@pytest.mark.agentscope
def test_agentscope_replies_through_both_entries(tmp_path: Path, in_tmp: Path, modelserve, smollm2_dir: Path,
                                                 greedy_spec: Path, agentscope_python: str) -> None:  # fmt: skip
    port = ports.free_port()
    config = tmp_path / "model_config.json"
    up = json.loads(modelserve("up", "-c", str(greedy_spec), "-m", str(smollm2_dir), "-p", str(port), "--name",
                               "msmol", "--agentscope-config", str(config), "--json").stdout)  # fmt: skip
    record = up["deployment"]
    assert record["backend"] == "flask-modelscope"
    argv = record["processes"][0]["argv"]
    assert argv[argv.index("--loader") + 1] == "modelscope"
    assert up["config_names"] == ["msmol-post", "msmol-openai"]
    # The server really loaded through modelscope (its log names the loader it used).
    assert " with modelscope in " in Path(record["processes"][0]["log"]).read_text()

    replies = ask_agentscope(agentscope_python, config, QUESTION, "msmol-post", "msmol-openai")
    assert [r["model_type"] for r in replies] == ["post_api_chat", "openai_chat"]
    for reply in replies:
        assert "Paris" in reply["text"], reply

    modelserve("down", "msmol")
    assert with_marker(record["marker"]) == []
    assert ports.is_free("127.0.0.1", port)


def test_an_id_in_the_modelscope_cache_is_served_from_it(tmp_path: Path, in_tmp: Path, modelserve,
                                                         cli_env: dict[str, str], smollm2_dir: Path,
                                                         greedy_spec: Path) -> None:  # fmt: skip
    # modelscope 1.40.2 reads models/ORG/NAME with '.' in NAME written as '___' (see
    # backends/flask_modelscope.py); the folder is a link to the real SmolLM2.
    cache = tmp_path / "modelscope-cache"
    folder = cache / "models" / "modelserve-test" / "SmolLM2-0___1B-Instruct"
    folder.parent.mkdir(parents=True)
    folder.symlink_to(smollm2_dir, target_is_directory=True)
    cli_env["MODELSCOPE_CACHE"] = str(cache)
    cli_env.pop("HF_HUB_CACHE", None)

    port = ports.free_port()
    up = json.loads(modelserve("up", "-c", str(greedy_spec), "-m", "modelserve-test/SmolLM2-0.1B-Instruct", "-p",
                               str(port), "--name", "mscache", "--agentscope-config",
                               str(tmp_path / "model_config.json"), "--json").stdout)  # fmt: skip
    record = up["deployment"]
    assert up["model"] == f"ModelScope cache {folder}"
    assert record["model_path"] == str(folder)
    assert record["served_model_name"] == "modelserve-test/SmolLM2-0.1B-Instruct"

    answer = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
        "model": "modelserve-test/SmolLM2-0.1B-Instruct", "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 24, "temperature": 0}, timeout=120)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert "Paris" in answer.json()["choices"][0]["message"]["content"]

    modelserve("down", "mscache")
    assert with_marker(record["marker"]) == []
