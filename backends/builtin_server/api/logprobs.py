"""Logprobs in OpenAI's two shapes: chat (a list per token) and the legacy completions (parallel lists)."""

from __future__ import annotations

from backends.builtin_server.engine.jobs import TokenLogprob


def chat_logprobs(tokens: tuple[TokenLogprob, ...] | None) -> list[dict[str, object]]:
    """OpenAI's chat logprobs: per token its text, logprob, UTF-8 bytes and top alternatives."""
    return [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes),
             "top_logprobs": [{"token": s, "logprob": lp, "bytes": list(raw)} for s, lp, raw in t.top]}
            for t in tokens or ()]  # fmt: skip


def completion_logprobs(tokens: tuple[TokenLogprob, ...] | None, offset: int = 0) -> dict[str, object]:
    """The legacy completions logprobs: parallel lists, alternatives as {token: logprob} maps."""
    items = tokens or ()
    offsets, at = [], offset
    for t in items:
        offsets.append(at)
        at += len(t.token)
    return {"tokens": [t.token for t in items], "token_logprobs": [t.logprob for t in items],
            "top_logprobs": [{s: lp for s, lp, _ in t.top} for t in items], "text_offset": offsets}  # fmt: skip
