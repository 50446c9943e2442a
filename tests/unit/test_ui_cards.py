"""The dashboard's cards from records: states in the page's words, the last error only where it
explains the state, API surfaces without the internal endpoints, what the playground may offer
(chat, or embeddings for an embedding deployment), members from the gateway's account, and no
key in anything sent to the page."""

from __future__ import annotations

import json

from launcher.store.records import DeploymentRecord, ProcessRecord
from launcher.ui.cards import card_of, member_cards

KEY = "secret-key-123"


def record(**over: object) -> DeploymentRecord:
    base = "http://127.0.0.1:8001"
    fields: dict[str, object] = dict(
        name="demo", backend="b", api="openai", model="m", model_path=None, served_model_name="m", host="127.0.0.1",
        port=8001, base_url=base, endpoints={"openai": f"{base}/v1", "post": f"{base}/llm/", "metrics": f"{base}/metrics"},
        marker="x", started_at=1000.0, log_dir="/tmp", api_key=KEY, last_exit="the server process was killed by SIGKILL",
        processes=[ProcessRecord("server", 42, 42, 999.0, ["srv"], "/tmp/server.log")],
        client_endpoints=[{"kind": "openai_chat", "url": f"{base}/v1", "model_name": "m", "api_key": KEY}],
    )  # fmt: skip
    fields.update(over)
    return DeploymentRecord(**fields)  # type: ignore[arg-type]


def test_a_ready_deployment() -> None:
    card = card_of(record(), state="running", dead=[], memory=2**30, now=1060.5)
    assert (card.state, card.uptime_s, card.last_error, card.kind) == ("ready", 60.5, None, "deployment")
    assert list(card.surfaces) == ["openai", "post"] and card.log_roles == ["server"] and card.pids == [42]
    assert (card.chat, card.embeds) == (True, False)
    assert KEY not in json.dumps(card.model_dump())


def test_a_failed_or_exited_one_says_why() -> None:
    failed = card_of(record(last_exit=None), state="failed", dead=["worker"], memory=None, now=1001.0)
    assert (failed.state, failed.last_error) == ("failed", "the worker process exited")
    exited = card_of(record(), state="exited", dead=["server"], memory=None, now=1001.0)
    assert (exited.state, exited.uptime_s, exited.last_error) == ("exited", None, "the server process was killed by SIGKILL")


def test_an_embedding_deployment_offers_embeddings_not_chat() -> None:
    card = card_of(record(spec={"model": "m", "task": "embed"}), state="running", dead=[], memory=None)
    assert (card.chat, card.embeds) == (False, True)
    no_openai = card_of(record(endpoints={"ollama": "http://127.0.0.1:1"}), state="running", dead=[], memory=None)
    assert (no_openai.chat, no_openai.embeds) == (False, False)


def test_members_from_the_gateways_account() -> None:
    detail = card_of(record(name="lab.chat", fleet="lab"), state="running", dead=[], memory=None)
    rows = {"members": [
        {"name": "chat", "deployment": "lab.chat", "model": "chat", "state": "ready", "in_flight": 2, "requests": 5},
        {"name": "code", "deployment": "lab.code", "model": "coder", "state": "stopped", "last_error": "exit 12"}]}  # fmt: skip
    chat, code = member_cards(rows, {"lab.chat": detail})
    assert (chat.state, chat.in_flight, chat.requests, chat.detail) == ("ready", 2, 5, detail)
    assert (code.state, code.detail, code.last_error) == ("unloaded", None, "exit 12")
