"""A stand-in for the `ollama` executable, for modelserve's tests (the real binary cannot be
installed where the tests run). It is NOT Ollama and has NO model: every answer is text derived
deterministically from the request ("Stand-in reply from MODEL: <the last user message>"), cut
to the requested token budget, with the response fields a real server sends.

    ollama serve        serve the HTTP API on $OLLAMA_HOST (default 127.0.0.1:11434)
    ollama --version    "ollama version is X" (server up), else the two warning lines Ollama prints

The executable is ``tests/ollama_standin/ollama``, a thin wrapper around ``cli.main``. The modules:
``cli`` (argv), ``server`` (the HTTP server and its route table), ``routes_models`` (tags, pull,
create, blobs, show, copy, delete), ``routes_inference`` (chat, generate, embeddings),
``routes_openai`` (/v1/...), ``routes_anthropic`` (/v1/messages), ``handler_base`` (request and response plumbing), ``store`` (names and
the model store), ``registry`` (the tags a pull knows), ``gguf_header``, ``generation`` (the
deterministic replies) and ``common``. Each names, in its docstring, what of Ollama it was built
from (facts carried over, no text copied). They use the standard library only: the wrapper runs
under whatever ``python3`` is first on PATH. ``harness`` holds the helpers the tests use.

Models live in $OLLAMA_MODELS (default: a temporary folder removed at exit), laid out like
Ollama's store: manifests/<host>/<namespace>/<model>/<tag> (JSON) and blobs/sha256-<hex>. Pulled
layers are placeholders: the built-in "registry" knows a few tags, their layers and sizes, and a
pull streams progress for those sizes without downloading anything. $OLLAMA_STANDIN_PULL_DELAY
(seconds per progress update, default 0.01) slows a pull down for tests that need one in flight.
"""
