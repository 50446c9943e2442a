"""Load one causal LM and its tokenizer with transformers or modelscope (the only difference).

Called from ``__main__`` before the scheduler thread starts; after that only the scheduler thread
touches the returned objects.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger("modelserve.server")

LOADERS = ("transformers", "modelscope")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class LoadError(Exception):
    """The model cannot be loaded; the message says what to change."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    dtype: torch.dtype
    device: torch.device
    seconds: float


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_model_ref(path: str) -> str:
    """A local model folder, checked; or a hub id ("org/name") that the loader resolves from its cache.

    modelscope treats any path that does not exist as a hub id and spends ~25 s failing to reach
    modelscope.cn when offline, so something that looks like a path must exist: fail at once.
    """
    folder = Path(path).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise LoadError(f"--model {path!r} has no config.json; pass the folder that holds the model's config.json")
        return str(folder)
    if _HUB_ID.fullmatch(path) and not path.startswith((".", "~")):
        log.info("--model %s is not a local folder; the loader resolves it as a hub id", path)
        return path
    raise LoadError(f"--model {path!r} is not a folder; pass the local folder of a converted model")


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise LoadError(f"--device {name}: torch {torch.__version__} sees no CUDA device; use --device cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LoadError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return device
    raise LoadError(f"--device {name!r} is not cpu, cuda or cuda:N")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    if name == "auto":
        if device.type == "cpu":
            # Measured on 2-core Zen 3 without bf16 instructions: float32 batches far better than bf16.
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise LoadError(f"--dtype {name!r} is not one of {', '.join(DTYPES)}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def _auto_classes(loader: str) -> tuple[Any, Any]:
    if loader == "transformers":
        module = importlib.import_module("transformers")
    elif loader == "modelscope":
        try:
            module = importlib.import_module("modelscope")
        except ImportError as exc:
            raise LoadError(
                f"--loader modelscope needs the modelscope package, which this interpreter lacks ({exc}); "
                "install it (pip install 'modelserve[modelscope]') or use --loader transformers"
            ) from exc
    else:
        raise LoadError(f"--loader {loader!r} is not one of {', '.join(LOADERS)}")
    return module.AutoModelForCausalLM, module.AutoTokenizer


def dtype_kwarg() -> str:
    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype; 5.x warns on the old name.
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load(*, path: str, loader: str, device: str, dtype: str, trust_remote_code: bool) -> LoadedModel:
    import time

    ref = check_model_ref(path)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model_cls, tokenizer_cls = _auto_classes(loader)
    import transformers

    # A tqdm bar per load is noise in a server log file.
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    started = time.monotonic()
    tokenizer = tokenizer_cls.from_pretrained(ref, trust_remote_code=trust_remote_code)
    model = model_cls.from_pretrained(ref, trust_remote_code=trust_remote_code, **{dtype_kwarg(): torch_dtype})
    model.to(torch_device)
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        # Batching needs a pad token; eos is what HF itself falls back to in generate().
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, torch_dtype, torch_device, time.monotonic() - started)
