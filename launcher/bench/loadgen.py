"""The load itself: aiohttp requests to /chat/completions, closed loop (a fixed number in
flight, the next one sent when one ends), or agent sessions whose turns follow each other.

Every request becomes one ``Sample``: when it started, its latency, its time to the first
content (streams), and the token counts from the server's usage. A refused or broken request is a
sample with ``error`` set, never an exception: one bad reply must not end the run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from launcher.bench.targets import BenchTarget
from launcher.bench.workloads import Workload, first_message, next_message, short_prompt, system_prompt

Progress = Callable[[int], None]  # called with how many requests just ended (or will never run)


@dataclass(frozen=True)
class Sample:
    session: int  # the agent session, or the request's index
    turn: int  # 1-based agent turn; 1 for chat/stream
    start: float  # seconds since the run started
    latency: float
    ttft: float | None  # streams: to the first chunk with content; None when none came
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None  # usage.prompt_tokens_details.cached_tokens, when the server reports it
    error: str | None = None
    estimated: bool = False  # a stream without usage: its tokens are the content chunks counted


@dataclass
class _Reply:
    text: str = ""
    ttft: float | None = None
    usage: dict[str, Any] | None = None
    chunks: int = 0


class Client:
    """One target's requests for one run: a session with as many connections as the run needs."""

    def __init__(self, target: BenchTarget, workload: Workload, *, min_tokens: bool, timeout: float) -> None:
        self.target = target
        self.workload = workload
        self.min_tokens = min_tokens
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.url = f"{target.openai_url}/chat/completions"
        self.started = time.monotonic()

    def body(self, messages: list[dict[str, str]], tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.target.model, "messages": messages, "max_tokens": tokens,
                                "temperature": 0.0}  # fmt: skip
        if self.min_tokens:  # every engine that honours it generates the same amount
            body["min_tokens"] = tokens
        if self.workload.streams:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    async def send(self, http: aiohttp.ClientSession, messages: list[dict[str, str]], *, session: int, turn: int,
                   tokens: int) -> tuple[Sample, str]:  # fmt: skip
        """One request; its sample and the reply's text (what an agent appends to its history)."""
        begin = time.monotonic()
        reply = _Reply()
        error: str | None = None
        try:
            async with http.post(self.url, json=self.body(messages, tokens), headers=self.target.headers(),
                                 timeout=self.timeout) as resp:  # fmt: skip
                if resp.status >= 400:
                    error = f"HTTP {resp.status}: {_message(await resp.text())}"
                elif self.workload.streams:
                    error = await _read_stream(resp, reply, begin)
                else:
                    _read_json(await resp.json(content_type=None), reply)
        except asyncio.TimeoutError:
            error = f"no complete answer within {self.timeout.total:g} s"
        except (aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        end = time.monotonic()
        return _sample(reply, error, session, turn, begin - self.started, end - begin), reply.text


def _message(text: str) -> str:
    """An OpenAI-shaped error's message, else the body's start."""
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    except ValueError:
        return text.strip()[:300] or "(empty body)"


async def _read_stream(resp: aiohttp.ClientResponse, reply: _Reply, begin: float) -> str | None:
    """SSE lines until [DONE]; returns an error text when the stream reports one or is cut short."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[len(b"data:") :].strip()
        if data == b"[DONE]":
            return None
        chunk = json.loads(data)
        if "error" in chunk:
            return f"error event in the stream: {_message(json.dumps(chunk))}"
        if chunk.get("usage"):
            reply.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            piece = delta.get("content") or delta.get("reasoning_content") or ""
            if piece or delta.get("tool_calls"):
                reply.chunks += 1
                reply.text += piece
                if reply.ttft is None:
                    reply.ttft = time.monotonic() - begin
    return "the stream ended without data: [DONE]"


def _read_json(data: Any, reply: _Reply) -> None:
    reply.text = str(data["choices"][0]["message"].get("content") or "")
    reply.usage = data.get("usage")


def _sample(reply: _Reply, error: str | None, session: int, turn: int, start: float, latency: float) -> Sample:
    usage = reply.usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    estimated = error is None and not usage and reply.chunks > 0
    if error is None and not usage and not estimated:
        error = "the reply carries no usage: its tokens cannot be counted"
    return Sample(session=session, turn=turn, start=start, latency=latency, ttft=reply.ttft,
                  prompt_tokens=int(usage.get("prompt_tokens") or 0),
                  completion_tokens=int(usage.get("completion_tokens") or 0) if usage else reply.chunks,
                  cached_tokens=int(cached) if isinstance(cached, int) else None, error=error,
                  estimated=estimated)  # fmt: skip


def _connector(workload: Workload) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=workload.concurrency + 1, force_close=False)


async def closed_loop(client: Client, progress: Progress) -> list[Sample]:
    """chat/stream: ``concurrency`` workers take the next prompt until ``requests`` were sent."""
    w = client.workload
    samples: list[Sample] = []
    pending = iter(range(w.requests))

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in pending:  # one shared iterator: each index goes to exactly one worker
            sample, _ = await client.send(http, [{"role": "user", "content": short_prompt(i)}], session=i, turn=1,
                                          tokens=w.tokens)  # fmt: skip
            samples.append(sample)
            progress(1)

    async with aiohttp.ClientSession(connector=_connector(w)) as http:
        client.started = time.monotonic()
        await asyncio.gather(*(worker(http) for _ in range(min(w.concurrency, w.requests))))
    return samples


async def agent_sessions(client: Client, salt: str, progress: Progress) -> list[Sample]:
    """agent: S sessions (``concurrency`` at once), K turns each, the history resent every turn
    with the assistant's reply appended. A failed turn ends its session (an agent cannot go on
    without the reply); its remaining turns are not sent."""
    w = client.workload
    system = system_prompt(w.system_tokens, salt)
    samples: list[Sample] = []
    gate = asyncio.Semaphore(w.concurrency)

    async def session(http: aiohttp.ClientSession, s: int) -> None:
        history = [{"role": "system", "content": system}, {"role": "user", "content": first_message(s)}]
        async with gate:
            for turn in range(1, w.turns + 1):
                sample, text = await client.send(http, history, session=s, turn=turn, tokens=w.tokens)
                samples.append(sample)
                if sample.error is not None:
                    progress(w.turns - turn + 1)
                    return
                progress(1)
                history = [*history, {"role": "assistant", "content": text},
                           {"role": "user", "content": next_message(s, turn + 1)}]  # fmt: skip

    async with aiohttp.ClientSession(connector=_connector(w)) as http:
        client.started = time.monotonic()
        await asyncio.gather(*(session(http, s) for s in range(w.sessions)))
    return samples


async def warm_up(target: BenchTarget, count: int, *, timeout: float) -> None:
    """``count`` short requests not counted anywhere: the first ones pay for lazy initialisation."""
    if count <= 0:
        return
    w = Workload(kind="chat", tokens=4, concurrency=1, requests=count)
    client = Client(target, w, min_tokens=False, timeout=timeout)
    await closed_loop(client, lambda _: None)
