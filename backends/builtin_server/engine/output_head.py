"""The output head (hidden state -> vocabulary logits) packed once for oneDNN, on CPU in float32.

A decoding step multiplies a handful of rows by the head's weight: SmolLM2-135M's is 49,152 x 576
(28M of its 135M parameters, 113 MB), far larger than any cache, and PyTorch's default CPU GEMM
streams it at ~5 GB/s for so few rows: 17.5 ms of a ~110 ms step of 8 rows on 2 cores. oneDNN's
linear over the weight reordered once into its blocked layout takes 8.3 ms (measured on the CI
machine kind; a whole step of 8 rows at 1.4k tokens of context: 110 -> 97 ms). The other layers'
weights are small enough to stay in cache between steps and gain nothing from it (measured), so
they stay as they are. The packed copy costs the head's size in memory once (the model keeps its
own weight: it is tied to the input embedding). Logits differ from the default GEMM's only in
summation order (~2e-5 absolute on SmolLM2's).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger("modelserve.server")


class PackedHead(torch.nn.Module):
    """A bias-free ``nn.Linear`` whose weight lives in oneDNN's layout; takes and gives dense tensors."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.original = linear  # what the model had, for anything that asks for its weight
        self.packed: torch.Tensor = linear.weight.detach().to_mkldnn()  # not a buffer: never saved or moved

    @property
    def weight(self) -> torch.Tensor:
        return self.original.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, self.in_features).contiguous()
        out = torch._C._nn.mkldnn_linear(rows.to_mkldnn(), self.packed, None).to_dense()
        return out.view(*hidden.shape[:-1], self.out_features)


def pack_output_head(model: Any) -> bool:
    """Swap the model's output head for a packed one where that is faster (CPU, float32, oneDNN
    built in, a plain bias-free head); True when the model has one (now or from before)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, PackedHead):
        return True
    if not (isinstance(head, torch.nn.Linear) and head.bias is None and head.weight.dtype == torch.float32
            and head.weight.device.type == "cpu" and torch.backends.mkldnn.is_available()):  # fmt: skip
        return False
    try:
        packed = PackedHead(head)
        with torch.inference_mode():  # the same logits, or the model keeps its own head
            probe = torch.randn(3, head.in_features, generator=torch.Generator().manual_seed(0))
            drift = float((packed(probe) - head(probe)).abs().max())
    except (RuntimeError, NotImplementedError) as exc:
        log.info("output head: kept as loaded (oneDNN refused it: %s)", exc)
        return False
    if drift > 1e-3:
        log.info("output head: kept as loaded (oneDNN's logits drifted by %.2g)", drift)
        return False
    model.set_output_embeddings(packed)
    log.info("output head: packed for oneDNN (%d x %d, float32 on CPU: faster decoding steps)",
             head.out_features, head.in_features)  # fmt: skip
    return True
