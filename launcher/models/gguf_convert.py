"""Convert a llama-family GGUF file into a plain Transformers folder.

Run as its own process (``python -m launcher.models.gguf_convert GGUF OUT``): it imports torch,
transformers and gguf, which the launcher itself never does. Progress goes to stdout as
``[step/total] text`` lines so the parent can show it.

The folder it writes is readable by transformers 5.x *and* 4.x (FastChat pins 4.57.6); the
edits below are the ones shared/reference/hf-fastchat.md section 1 found necessary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STEPS = 5


def _step(n: int, text: str) -> None:
    print(f"[{n}/{STEPS}] {text}", flush=True)


def convert(gguf_path: Path, out_dir: Path) -> None:
    t0 = time.monotonic()
    _step(1, "importing torch and transformers")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_path.parent), gguf_path.name
    _step(2, f"reading the tokenizer from {name}")
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)

    _step(3, "de-quantizing the weights to float32")
    gguf_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    # transformers 5 keeps a GGUF quantizer on the model although the tensors are plain float32
    # by now, and then refuses save_pretrained(). Rebuild a clean model from the same config.
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    result = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if "lm_head" not in k]
    if missing or result.unexpected_keys:
        raise SystemExit(f"weights do not match: missing {missing}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    del gguf_model

    _step(4, f"writing safetensors to {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    model.save_pretrained(str(out_dir))

    _step(5, "making the folder readable by transformers 4.x as well")
    _fix_for_transformers_4(out_dir)
    print(f"converted in {time.monotonic() - t0:.1f} s", flush=True)


def _fix_for_transformers_4(out_dir: Path) -> None:
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = cfg.get("rope_parameters") or {}
    # Without an explicit rope_theta, 4.57.6 silently falls back to 10000 and computes wrong
    # positions (the answers get worse, nothing fails).
    if "rope_theta" not in cfg and "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    cfg.setdefault("rope_scaling", None)
    cfg["torch_dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    tok_path = out_dir / "tokenizer_config.json"
    tok = json.loads(tok_path.read_text())
    # "TokenizersBackend" exists only in transformers 5.
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    template_file = out_dir / "chat_template.jinja"
    if "chat_template" not in tok and template_file.exists():
        tok["chat_template"] = template_file.read_text()
    for key in ("is_local", "local_files_only", "backend"):
        tok.pop(key, None)
    tok["model_max_length"] = cfg.get("max_position_embeddings", 8192)
    # 4.x returns token_type_ids, which generate(**encoding) then rejects for llama models.
    tok["model_input_names"] = ["input_ids", "attention_mask"]
    tok_path.write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    convert(args.gguf, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
