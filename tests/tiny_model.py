"""Random-weight Llama models built from a config, with a real fast tokenizer: no download.

The server tests' tiny model (``tests/servers.py``) and the GPU device check
(``bench/device_check``, which builds a bigger one on the lent machine) load them with the real
loading code. The tokenizer is a WordLevel one over a small vocabulary with a ChatML template,
built with the ``tokenizers`` library, or copied from a real model folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The small tokenizer's whole vocabulary (besides its special tokens), space-separated.
VOCABULARY = (
    "system user assistant you are a helpful the what is capital of france germany italy japan paris berlin rome "
    "tokyo hello hi world please tell me about cats dogs and one two three four five six seven eight nine ten "
    "write long story short answer question yes no , . ? !"
)
TINY_CONTEXT = 2048
# The server tests' model: 2 layers of width 64, grouped-query attention (4 heads, 2 KV heads).
TINY_LAYOUT: dict[str, Any] = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip


def build_tokenizer(folder: Path, *, context: int = TINY_CONTEXT) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate([*specials, *VOCABULARY.split()])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        model_max_length=context,
    )
    tok.chat_template = CHATML
    tok.save_pretrained(folder)


def copy_tokenizer(source: Path, folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)


def build_llama(folder: Path, *, seed: int = 0, context: int = TINY_CONTEXT, **layout: Any) -> int:
    """A random-weight LlamaForCausalLM saved into ``folder`` (which already holds the tokenizer),
    with ``layout``'s sizes (TINY_LAYOUT's keys) and ``context`` as its max_position_embeddings.
    Returns its parameter count (tied embeddings once, as saved)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        **{**TINY_LAYOUT, **layout},
        vocab_size=len(tok),
        max_position_embeddings=context,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())
