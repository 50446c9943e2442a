"""The deployments `modelserve k8s render` is checked on: golden files (tests/unit/test_k8s_render.py)
and offline schema validation (tests/integration/test_k8s_validate.py) render the same five.

Model folders hold only config.json (what the planner reads: head counts, dtype, size): the
Llama-2-7b one from the GPU fixtures, and SmolLM2-135M-Instruct's own values for the CPU cases.
GPU cases render with the fixture GPUs as this machine's; the manifests must not depend on them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from launcher import devices

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpu"
API_KEY = "sk-k8s-test-4f9a1c"  # must never appear in plain text in a rendered file
K8S_VERSION = "1.31.0"  # the oldest release still in upstream support when this was written
SMOLLM2_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "vocab_size": 49152,
    "max_position_embeddings": 8192, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str  # golden file tests/golden/k8s/NAME.yaml
    spec: str  # the YAML, with {smol} and {llama} for the model folders
    gpus_csv: str | None  # the nvidia-smi fixture standing for this machine's GPUs
    fleet: bool = False
    kustomize: bool = False


CASES = (
    Case("cpu", "model: {smol}\nname: smol\nbackend: auto\ndevice: cpu\nport: 8000\n", None),
    Case("gpu-1", "model: {llama}\nname: llama2\nbackend: vllm\ndevice: cuda\nport: 8000\nmax_model_len: 4096\n",
         "smi-1gpu.csv"),
    Case("gpu-4-tp", "model: {llama}\nname: llama2-tp\nbackend: auto\ndevice: cuda\ngpus: 4\nport: 8000\n"
                     "timeout: 1800\nvllm:\n  gpu_memory_utilization: 0.85\n", "smi-8gpu-mixed.csv"),
    Case("api-key", "model: {smol}\nname: smol-secure\nbackend: flask-transformers\ndevice: cpu\nthreads: 2\n"
                    f"port: 8080\napi_key: {API_KEY}\n", None),
    Case("fleet", "name: team\ngateway:\n  port: 9000\nagentscope:\n  temperature: 0.2\ndeployments:\n"
                  "  - name: chat\n    model: {smol}\n    backend: flask-transformers\n    device: cpu\n    threads: 2\n"
                  "  - name: coder\n    model: {llama}\n    backend: vllm\n    device: cuda\n"
                  "  - name: big\n    model: {llama}\n    served_model_name: llama-big\n    backend: vllm\n"
                  "    device: cuda\n    gpus: 2\n    max_model_len: 4096\n", "smi-8gpu-mixed.csv", fleet=True,
         kustomize=True),
)  # fmt: skip


def model_folders(root: Path) -> dict[str, Path]:
    smol = root / "SmolLM2-135M-Instruct"
    smol.mkdir(parents=True, exist_ok=True)
    (smol / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    llama = root / "Llama-2-7b-chat-hf"
    llama.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "llama-2-7b-config.json", llama / "config.json")
    return {"smol": smol, "llama": llama}


def write_spec(case: Case, root: Path) -> Path:
    folders = model_folders(root / "models")
    path = root / ("fleet.yaml" if case.fleet else "deployment.yaml")
    path.write_text(case.spec.format(**{k: str(v) for k, v in folders.items()}))
    return path


def fixture_gpus(case: Case) -> list[devices.Gpu]:
    if case.gpus_csv is None:
        return []
    return devices.parse_nvidia_smi_csv((FIXTURES / case.gpus_csv).read_text())


def validate(files: list[Path]) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict` against K8S_VERSION (its schemas ship in the package: offline)."""
    return subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", K8S_VERSION,
                           *map(str, files)], capture_output=True, text=True, timeout=120)  # fmt: skip
