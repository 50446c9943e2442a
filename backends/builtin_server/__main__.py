"""``python -m backends.builtin_server --model DIR``: load, warm up, then bind and serve until SIGTERM.

``--task embed`` or ``--task rerank`` loads an embedding model or a cross-encoder instead of a
causal LM, run by the pooling engine (engine/pooling.py) and served on /v1/embeddings or
/v1/rerank; the generation routes then answer 400 naming the task.

The port is bound only after the model has loaded and one token has been generated, so a
``/health`` that answers means the server is ready. The API key comes from ``MODELSERVE_API_KEY``
(never argv, where ``ps`` would show it). SIGTERM (or Ctrl-C) drains: new requests get 503 with
Retry-After while those in flight get ``--drain-timeout`` seconds to finish; then it exits 0.

Example::

    OMP_NUM_THREADS=1 python -m backends.builtin_server --model ./smollm2-135m --port 8000 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from backends.builtin_server.http.granian_worker import HttpLimits
from backends.builtin_server.http.server import DRAIN_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_CONNECTIONS, default_threads

if TYPE_CHECKING:
    from backends.builtin_server.engine.loaders import LoadedModel
    from backends.builtin_server.engine.scheduler import Engine

log = logging.getLogger("modelserve.server")

API_KEY_ENV = "MODELSERVE_API_KEY"
# backends/builtin_server/tools/parsers.py: PARSERS (spelled here so --help imports no torch).
TOOL_PARSERS = ("generic", "hermes", "llama3_json", "mistral", "none")
TASKS = ("generate", "embed", "rerank")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be >= 0 seconds")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value < 0.001:  # granian counts in milliseconds
        raise argparse.ArgumentTypeError(f"{value} must be at least 0.001 seconds")
    return value


def _device(text: str) -> str:
    if text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    """Long: one add_argument per server flag, each with the help --help shows."""
    p = argparse.ArgumentParser(
        prog="python -m backends.builtin_server",
        description="Serve one causal LM over AgentScope's POST /llm/ and the OpenAI /v1 API; or, with --task, an "
        "embedding model (/v1/embeddings) or a cross-encoder (/v1/rerank).",
        epilog=f"The API key is read from ${API_KEY_ENV}; when set, every route but GET /health needs "
        "'Authorization: Bearer KEY'.",
    )
    p.add_argument("--model", required=True, help="local folder of the model (config.json, weights, tokenizer)")
    p.add_argument("--served-model-name", help="name clients use (default: the folder's basename)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="auto: float32 on CPU; bfloat16 on CUDA where supported, else float16",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads (default: every CPU; one batched engine uses them best)",
    )
    p.add_argument("--max-batch-size", type=_positive_int, default=8,
                   help="rows decoding together (each choice of a request is a row); newcomers join at the next step")  # fmt: skip
    p.add_argument("--kv-budget-tokens", type=_positive_int, default=None,
                   help="KV cache the running rows may hold, in tokens (padding included); above it requests wait "
                        "(default: half the memory free after loading)")  # fmt: skip
    p.add_argument("--prefill-tokens-per-step", type=_positive_int, default=None, metavar="TOKENS",
                   help="prompt tokens (left padding included) computed in one pass between two decoding steps: "
                        "more is faster for long prompts, less stalls running replies for shorter (default: 192)")  # fmt: skip
    p.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false",
                   help="do not keep the KV of earlier requests for later ones that start the same way "
                        "(on by default: an agent's next step computes only what it added)")  # fmt: skip
    p.add_argument("--max-queue", type=_positive_int, default=256,
                   help="requests that may wait; past that the server answers 503 with Retry-After")  # fmt: skip
    p.add_argument(
        "--max-new-tokens-limit", type=_positive_int, default=4096, help="largest max_new_tokens a request may ask for"
    )
    p.add_argument("--drain-timeout", type=_seconds, default=DRAIN_TIMEOUT_S, metavar="SECONDS",
                   help="on SIGTERM/SIGINT: new requests get 503 while the ones in flight (streams too) get this long "
                        "to finish; what is still running then gets 503 (default: %(default)s; 0: stop at once)")  # fmt: skip
    _add_http_options(p)
    p.add_argument("--loader", choices=("transformers", "modelscope"), default="transformers")
    p.add_argument(
        "--tool-parser",
        choices=TOOL_PARSERS,
        default="generic",
        help="how the model writes tool calls: its family's format, or generic (tools described in the prompt, "
        "replies constrained to JSON); none: refuse tools; modelserve picks it from the model's chat template",
    )
    p.add_argument("--trust-remote-code", action="store_true", help="run the model folder's own Python code")
    p.add_argument("--task", choices=TASKS, default="generate",
                   help="generate: a causal LM (chat, completions, /llm/); embed: an embedding model (a "
                        "sentence-transformers folder) on /v1/embeddings; rerank: a cross-encoder on /v1/rerank")  # fmt: skip
    p.add_argument("--max-batch-inputs", type=_positive_int, default=32,
                   help="embed/rerank: inputs (texts, or query-document pairs) encoded in one forward pass")  # fmt: skip
    p.add_argument("--batch-wait-ms", type=_seconds, default=10.0, metavar="MS",
                   help="embed/rerank: while a forward pass holds fewer inputs than the last one did (concurrent "
                        "clients), how long it waits for more to arrive (default: %(default)s; a lone client never "
                        "waits)")  # fmt: skip
    return p


def _add_http_options(p: argparse.ArgumentParser) -> None:
    """What one slow or greedy client can take from the HTTP server (http/granian_worker.py)."""
    p.add_argument("--header-timeout", type=_positive_seconds, default=HEADER_TIMEOUT_S, metavar="SECONDS",
                   help="a connection that has not sent a request's headers this long after it opened (or after its "
                        "last answer, when idle) is closed: slow and silent clients hold nothing (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-connections", type=_positive_int, default=MAX_CONNECTIONS,
                   help="connections open at once; more wait in the listen backlog (default: %(default)s, lowered "
                        "to what the descriptor limit allows)")  # fmt: skip
    p.add_argument("--http-threads", type=_positive_int, default=None,
                   help="requests answered at once, streams included (each holds a thread until it ends; idle ones "
                        "go away) (default: --max-batch-size + --max-queue + 16, so the queue limit decides)")  # fmt: skip


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        # MODELSERVE_LOG_LEVEL=DEBUG adds a line per engine turn (prefill and decoding step timings).
        level=os.environ.get("MODELSERVE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # granian logs each worker and runtime thread it starts and stops; the serving line says it all.
    logging.getLogger("_granian").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    served_name = args.served_model_name or Path(args.model).expanduser().resolve().name
    api_key = os.environ.get(API_KEY_ENV) or None

    # Heavy imports only now: --help and argument errors stay instant.
    import torch

    from backends.builtin_server.engine.loaders import LoadError, load
    from backends.builtin_server.http.server import serve

    torch.set_num_threads(args.threads)
    if args.task != "generate":
        return _serve_pooling(args, served_name, api_key)
    try:
        loaded = load(
            path=args.model,
            loader=args.loader,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
        )
    except LoadError as exc:
        log.error("cannot load the model: %s", exc)
        return 2
    log.info(
        "loaded %s as %r with %s in %.1f s: dtype=%s device=%s threads=%d max_batch_size=%d",
        args.model,
        served_name,
        args.loader,
        loaded.seconds,
        str(loaded.dtype).removeprefix("torch."),
        loaded.device,
        torch.get_num_threads(),
        args.max_batch_size,
    )

    engine = _engine(args, loaded)
    engine.start()
    try:
        started = time.monotonic()
        engine.warm_up()
        log.info("warm-up: 1 token in %.2f s", time.monotonic() - started)
    except Exception as exc:
        log.error("the model failed its first generate(): %s", exc)
        engine.stop()
        return 1
    return serve(engine, host=args.host, port=args.port, served_name=served_name, api_key=api_key,
                 drain_timeout=args.drain_timeout, limits=_http_limits(args))  # fmt: skip


def _http_limits(args: argparse.Namespace) -> HttpLimits:
    return HttpLimits(threads=args.http_threads or default_threads(args.max_batch_size, args.max_queue),
                      max_connections=args.max_connections, header_timeout=args.header_timeout)  # fmt: skip


def _serve_pooling(args: argparse.Namespace, served_name: str, api_key: str | None) -> int:
    """An embed or rerank server: the encoder, its pooling engine, one real input, then serve."""
    import time as clock

    from backends.builtin_server.engine.encoders import load_encoder
    from backends.builtin_server.engine.loaders import LoadError
    from backends.builtin_server.engine.pooling import PoolingEngine
    from backends.builtin_server.http.server import serve

    started = clock.monotonic()
    try:
        encoder = load_encoder(path=args.model, task=args.task, loader=args.loader, device=args.device,
                               dtype=args.dtype, trust_remote_code=args.trust_remote_code)  # fmt: skip
    except LoadError as exc:
        log.error("cannot load the model: %s", exc)
        return 2
    log.info("loaded %s as %r for task %s with %s in %.1f s (max %d tokens per input; batches of %d)", args.model,
             served_name, args.task, args.loader, clock.monotonic() - started, encoder.max_tokens,
             args.max_batch_inputs)  # fmt: skip
    pooling = PoolingEngine(encoder, max_batch_inputs=args.max_batch_inputs, batch_wait=args.batch_wait_ms / 1000,
                            max_queue=args.max_queue)  # fmt: skip
    pooling.start()
    try:
        sample = [("Hi", "Hi")] if args.task == "rerank" else ["Hi"]
        pooling.warm_up(sample, timeout=300)
    except Exception as exc:
        log.error("the model failed its first forward pass: %s", exc)
        pooling.stop()
        return 1
    return serve(pooling, host=args.host, port=args.port, served_name=served_name, api_key=api_key,
                 drain_timeout=args.drain_timeout, task=args.task, limits=_http_limits(args))  # fmt: skip


def _engine(args: argparse.Namespace, loaded: LoadedModel) -> Engine:
    from backends.builtin_server.engine.memory import default_kv_budget
    from backends.builtin_server.engine.metrics import Metrics
    from backends.builtin_server.engine.scheduler import Engine

    engine = Engine(
        loaded.model,
        loaded.tokenizer,
        max_batch_size=args.max_batch_size,
        max_new_tokens_limit=args.max_new_tokens_limit,
        metrics=Metrics(),
        tool_parser=args.tool_parser,
        kv_budget_tokens=args.kv_budget_tokens or default_kv_budget(loaded.model, loaded.device),
        max_queue=args.max_queue,
        prefix_cache=args.prefix_cache,
        prefill_tokens_per_step=args.prefill_tokens_per_step,
    )
    log.info("KV budget: %d tokens; queue limit: %d; prefix cache: %s", engine.kv_budget, engine.max_queue,
             "on" if engine.store.prefix_caching else "off")  # fmt: skip
    return engine


def run() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        # Ctrl-C while loading (the handlers are installed only once serving starts).
        log.info("interrupted during start-up")
        return 130


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown: freeing torch's and the tokenizer's
    state takes 1-3 s here, all of it inside the launcher's SIGTERM-to-SIGKILL window, and
    nothing is left to do by now (the server writes no files; the log is flushed first)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(run())
