"""The stand-in's built-in "registry": the few library tags a pull knows, with the layers (media
type and size, as on ollama.com) and the template each is served with; and the media types and
GGUF file-type names the model store uses."""

from __future__ import annotations

from typing import Any

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
MT_MODEL = "application/vnd.ollama.image.model"
MT_TEMPLATE = "application/vnd.ollama.image.template"
MT_PARAMS = "application/vnd.ollama.image.params"
MT_LICENSE = "application/vnd.ollama.image.license"
MT_SYSTEM = "application/vnd.ollama.image.system"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
          "<|im_start|>assistant\n")
LLAMA2 = "[INST] <<SYS>>{{ .System }}<</SYS>>\n\n{{ .Prompt }} [/INST]"
# GGUF general.file_type -> Ollama's quantization_level names.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              12: "Q3_K_M", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}

# tag -> what the library serves for it (sizes as on ollama.com).
REGISTRY: dict[str, dict[str, Any]] = {
    "library/qwen2.5:0.5b": {"family": "qwen2", "parameter_size": "494.03M", "quantization_level": "Q4_K_M",
                             "layers": [(MT_MODEL, 397_807_936), (MT_TEMPLATE, 1_482), (MT_SYSTEM, 68),
                                        (MT_LICENSE, 11_343)], "template": CHATML},
    "library/smollm2:135m": {"family": "llama", "parameter_size": "134.52M", "quantization_level": "F16",
                             "layers": [(MT_MODEL, 270_898_080), (MT_TEMPLATE, 1_841), (MT_LICENSE, 11_358),
                                        (MT_PARAMS, 109)], "template": CHATML},
    "library/llama2:7b-chat": {"family": "llama", "parameter_size": "7B", "quantization_level": "Q4_0",
                               "layers": [(MT_MODEL, 3_826_793_677), (MT_LICENSE, 7_020), (MT_LICENSE, 4_766),
                                          (MT_TEMPLATE, 59), (MT_PARAMS, 91)], "template": LLAMA2},
    "library/tinyllama:latest": {"family": "llama", "parameter_size": "1B", "quantization_level": "Q4_0",
                                 "layers": [(MT_MODEL, 637_699_456), (MT_TEMPLATE, 98), (MT_PARAMS, 110)],
                                 "template": CHATML},
    # An embedding model (ollama.com/library/all-minilm): no template; its config gives the size.
    "library/all-minilm:latest": {"family": "bert", "parameter_size": "23M", "quantization_level": "F16",
                                  "layers": [(MT_MODEL, 45_949_216), (MT_LICENSE, 11_357), (MT_PARAMS, 16)],
                                  "template": "", "embedding_length": 384, "context_length": 256},
}
REGISTRY["library/all-minilm:22m"] = REGISTRY["library/all-minilm:latest"]
REGISTRY["library/llama2:latest"] = REGISTRY["library/llama2:7b-chat"]
REGISTRY["library/tinyllama:1.1b"] = REGISTRY["library/tinyllama:latest"]
