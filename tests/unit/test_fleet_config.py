"""`modelserve config FLEET --member ID`: one member's entries, pointing at the gateway."""

from __future__ import annotations

import pytest

from launcher.core.errors import ClientConfigError
from launcher.lifecycle import clients
from launcher.store import records

GW = "http://127.0.0.1:8000"


def fleet_record() -> records.DeploymentRecord:
    endpoints = [("openai_chat", f"{GW}/v1", "chat"), ("post_api_chat", f"{GW}/llm/chat/", "chat"),
                 ("openai_chat", f"{GW}/v1", "coder")]  # fmt: skip
    return records.DeploymentRecord(
        name="lab", backend="gateway", api="openai", model="fleet f.yaml", model_path=None,
        served_model_name="chat, coder", host="127.0.0.1", port=8000, base_url=GW, endpoints={}, marker="m",
        started_at=0.0, log_dir="/tmp", members=["lab.chat", "lab.coder"],
        client_endpoints=[{"kind": k, "url": u, "model_name": m, "api_key": "k"} for k, u, m in endpoints],
    )  # fmt: skip


def test_a_member_is_rendered_through_the_gateway() -> None:
    rendered = clients.config_for(fleet_record(), "agentscope", member="coder")
    assert [(e["config_name"], e["model_name"], e["client_args"]["base_url"]) for e in rendered.entries] == [
        ("lab-coder-openai", "coder", f"{GW}/v1/")
    ]
    first = clients.config_for(fleet_record(), "agentscope")
    assert sorted(e["config_name"] for e in first.entries) == ["lab-chat-openai", "lab-chat-post"]
    assert first.notes[0] == "fleet lab: rendered 'chat'; --member picks another (coder)"


def test_an_unknown_member_names_the_ones_there() -> None:
    with pytest.raises(ClientConfigError) as caught:
        clients.config_for(fleet_record(), "openai-env", member="nope")
    assert caught.value.hint == "pass --member with one of: chat, coder"
