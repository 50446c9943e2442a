"""The dashboard in a real browser (Debian's chromium driven by Playwright) against live
deployments, all started once for this module with the real CLI: the built-in server on SmolLM2
(with an API key), the Ollama stand-in, and a fleet of two stand-in members behind a keyed
gateway; the dashboard itself keyed, logged into through its form.

What the page must show, each checked from the outside: every deployment and member; a request
the test makes in the request table within 2 s with its token counts; a chart's series growing;
a member unloaded from the page is unloaded in `modelserve status`; a log line the test provokes;
a playground answer streamed in pieces; stop and restart behind a confirmation; a config without
its key. Screenshots of each view go to ``artifacts/dashboard/`` (kept by CI); at the end
`down --all` leaves no process of the test's state folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd
from tests.ollama_standin.harness import env_with_standin
from tests.procs import with_home

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("MODELSERVE_ARTIFACTS", ROOT / "artifacts")) / "dashboard"  # kept by CI
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
UI_KEY = "ui-secret-" + uuid.uuid4().hex[:8]
CHAT_KEY = "chat-secret-" + uuid.uuid4().hex[:8]
GATEWAY_KEY = "gateway-secret-" + uuid.uuid4().hex[:8]
KEYS = (UI_KEY, CHAT_KEY, GATEWAY_KEY)


@dataclass
class Live:
    env: dict[str, str]
    home: Path
    ui: str
    chat: str
    fleet: str
    page: Any  # playwright.sync_api.Page
    responses: list[Any]  # every answer the browser got (playwright Responses), and page texts

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=self.home.parent)  # fmt: skip
        assert proc.returncode == 0, f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def status(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in json.loads(self.cli("status", "--json").stdout)["deployments"]}

    def view(self, name: str) -> None:
        self.page.goto(f"{self.ui}/#{name}")
        self.page.wait_for_selector(f"#view-{name}:not([hidden])")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _fleet_file(folder: Path, port: int) -> Path:
    path = folder / "fleet.yaml"
    path.write_text(f"name: lab\ngateway: {{port: {port}, api_key: {GATEWAY_KEY}}}\npolicy: {{max_loaded: 2, idle_ttl: 0}}\n"
                    "deployments:\n  - {name: tiny, model: 'qwen2.5:0.5b', backend: ollama, preload: true}\n"
                    "  - {name: small, model: tinyllama, backend: ollama}\n")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Iterator[Live]:
    # Long: one set of live deployments and one browser for every test of the module.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test-tools` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    work = tmp_path_factory.mktemp("dashboard")
    home = work / "msh"
    env = env_with_standin({**os.environ, "MODELSERVE_HOME": str(home), "PYTHONUNBUFFERED": "1",
                            "OLLAMA_MODELS": str(work / "ollama-models"), "MODELSERVE_UI_API_KEY": UI_KEY})  # fmt: skip
    chat_port, oll_port, gw_port, ui_port = (ports.free_port() for _ in range(4))
    live = Live(env, home, f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{chat_port}",
                f"http://127.0.0.1:{gw_port}", None, [])  # fmt: skip
    browser = None
    playwright = sync_playwright().start()
    try:
        live.cli("up", "-m", str(smollm2_dir), "-p", str(chat_port), "--name", "chat", "--threads", "1",
                 "--api-key", CHAT_KEY, "--served-model-name", "smollm2", "--agentscope-config", str(work / "c.json"))  # fmt: skip
        live.cli("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(oll_port), "--name", "oll",
                 "--agentscope-config", str(work / "c.json"))  # fmt: skip
        live.cli("up", "-c", str(_fleet_file(work, gw_port)))
        live.cli("ui", "-p", str(ui_port))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.ui)
        live.page = context.new_page()
        live.page.on("response", lambda response: live.responses.append(response))
        live.page.goto(live.ui + "/")
        live.page.fill("input[name=key]", UI_KEY)
        live.page.click("button.primary")
        live.page.wait_for_selector("#conn.live")
        yield live
    finally:
        if browser is not None:
            browser.close()
        playwright.stop()
        subprocess.run([*modelserve_cmd(), "down", "--all"], env=env, capture_output=True, timeout=300)
    assert with_home(home) == [], "down --all left processes of the dashboard's deployments"


def _text_of(response: Any) -> str:
    """A response's body when it is text that ended (the SSE streams never end: their events are
    checked in the page instead)."""
    if "text/event-stream" in (response.headers.get("content-type") or ""):
        return ""
    try:
        return response.text()
    except Exception:  # a redirect or an aborted request has no body to read
        return ""


def _card(live: Live, name: str) -> Any:
    return live.page.locator(f'#cards article[data-name="{name}"]')


def test_the_page_lists_every_deployment_fleet_and_member(live: Live) -> None:
    live.view("overview")
    for name in ("chat", "oll", "lab"):
        live.page.wait_for_selector(f'#cards article[data-name="{name}"][data-state="ready"]', timeout=15000)
    chat = _card(live, "chat").inner_text()
    assert "flask-transformers" in chat and "openai" in chat and "post" in chat
    assert "ollama" in _card(live, "oll").inner_text()
    live.page.wait_for_selector('#cards article[data-name="lab"] .member[data-member="tiny"][data-state="ready"]')
    live.page.wait_for_selector('#cards article[data-name="lab"] .member[data-member="small"][data-state="unloaded"]')
    assert "Unload" in live.page.locator('.member[data-member="tiny"]').inner_text()


def _ask(live: Live, tag: str, max_tokens: int = 6) -> dict[str, Any]:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": max_tokens, "temperature": 0, "user": tag}  # fmt: skip
    r = requests.post(f"{live.chat}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {CHAT_KEY}"},
                      timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    usage: dict[str, Any] = r.json()["usage"]
    return usage


def test_a_request_appears_in_recent_requests_within_2_s_with_its_tokens(live: Live) -> None:
    live.view("requests")
    usage = _ask(live, "ui-table-" + uuid.uuid4().hex[:6])
    answered = time.monotonic()
    row = live.page.locator(f'#requests tbody tr[data-source="chat"]:has(td.completion:text-is("{usage["completion_tokens"]}"))'
                            f':has(td.prompt:text-is("{usage["prompt_tokens"]}"))').first  # fmt: skip
    row.wait_for(timeout=2000)
    print(f"request row shown {time.monotonic() - answered:.2f} s after the answer")
    assert "/v1/chat/completions" in row.inner_text()
    # Through the gateway: the fleet's own summary, naming the member, with the member's usage.
    r = requests.post(f"{live.fleet}/v1/chat/completions", headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                      json={"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}]}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    member_usage = r.json()["usage"]
    via = live.page.locator('#requests tbody tr[data-source="lab"]').first
    via.wait_for(timeout=2000)
    assert "lab → tiny" in via.inner_text()
    assert via.locator("td.completion").inner_text() == str(member_usage["completion_tokens"])
    live.shot("requests")


def test_a_charts_series_grows(live: Live) -> None:
    live.view("overview")
    tokens = live.page.locator('.chart[data-figure="tokens_per_s"]')
    memory = live.page.locator('.chart[data-figure="memory_mib"]')
    live.page.wait_for_function("document.querySelector('.chart[data-figure=\"memory_mib\"]').dataset.series"
                                ".split(',').includes('lab.tiny')", timeout=10000)  # fmt: skip
    before = int(memory.get_attribute("data-values") or 0)
    _ask(live, "ui-chart")
    live.page.wait_for_function(f"Number(document.querySelector('.chart[data-figure=\"memory_mib\"]').dataset.values) > {before + 3}",
                                timeout=10000)  # fmt: skip
    assert {"chat", "oll", "lab", "lab.tiny"} <= set((memory.get_attribute("data-series") or "").split(","))
    # The requests' tokens show as a rate above zero in chat's series (the chart's own data).
    peaks = dict(item.split("=") for item in (tokens.get_attribute("data-peaks") or "").split(","))
    assert float(peaks["chat"]) > 0, peaks
    live.shot("overview")


def test_the_log_view_follows_a_line_the_test_provokes(live: Live) -> None:
    tag = "ui-log-" + uuid.uuid4().hex[:8]
    live.view("logs")
    live.page.select_option("#log-target", "chat|server")
    live.page.fill("#log-filter", tag)
    _ask(live, tag)  # the server logs the request with its `user`
    live.page.wait_for_function(f"document.querySelector('#log').textContent.includes('{tag}')", timeout=10000)
    shown = live.page.locator("#log").inner_text()
    assert "POST /v1/chat/completions -> 200" in shown and all(tag in line for line in shown.splitlines() if line)
    live.shot("logs")


def test_the_playground_streams_an_answer(live: Live) -> None:
    live.view("playground")
    live.page.select_option("#pg-target", "chat")
    live.page.fill("#pg-max", "12")
    live.page.fill("#pg-input", "What is the capital of France?")
    raw = live.page.locator("#pg-raw").inner_text()
    assert raw.startswith(f"POST {live.chat}/v1/chat/completions") and '"stream": true' in raw and "tools" not in raw
    # Count the pieces as they arrive: a streamed answer lands in several separate updates.
    live.page.evaluate("""() => { window.pieces = 0;
        new MutationObserver((m) => { window.pieces += m.length; }).observe(document.querySelector('#pg-output'),
                                                                           {childList: true, characterData: true}); }""")
    live.page.click("#pg-send")
    live.page.wait_for_function("document.querySelector('#pg-status').textContent.startsWith('done')", timeout=120000)
    answer = live.page.locator("#pg-output").inner_text()
    assert answer.strip() and live.page.evaluate("window.pieces") >= 3, answer
    assert "completion tokens" in live.page.locator("#pg-status").inner_text()
    live.page.check("#pg-tools")
    assert '"get_weather"' in live.page.locator("#pg-raw").inner_text()
    live.page.select_option("#pg-target", "lab|tiny")  # tools on, through the fleet: the stand-in calls the tool
    live.page.fill("#pg-input", "What is the weather in Paris?")
    live.page.click("#pg-send")
    live.page.wait_for_function("document.querySelector('#pg-status').textContent.startsWith('done')", timeout=60000)
    assert "get_weather" in live.page.locator("#pg-output").inner_text()
    live.page.uncheck("#pg-tools")
    live.page.select_option("#pg-target", "chat")
    live.page.click("#pg-send")
    live.page.wait_for_function("document.querySelector('#pg-status').textContent.startsWith('done')", timeout=120000)
    live.shot("playground")


def test_a_config_is_copied_without_its_key(live: Live) -> None:
    live.view("overview")
    _card(live, "chat").locator('button[data-act="config"]').click()
    live.page.select_option("#config-format", "openai-env")
    live.page.wait_for_function("document.querySelector('#config-text').textContent.includes('OPENAI_BASE_URL')")
    text = live.page.locator("#config-text").inner_text()
    assert f"OPENAI_BASE_URL={live.chat}/v1" in text and "OPENAI_API_KEY=YOUR_API_KEY" in text
    assert "modelserve config chat -f openai-env" in live.page.locator("#config-note").inner_text()
    live.page.click("#config-copy")
    assert live.page.evaluate("navigator.clipboard.readText()") == text
    live.page.click('#config-dialog button[value="close"]')


def test_unloading_a_member_from_the_page_unloads_it_in_status(live: Live) -> None:
    live.view("overview")
    assert live.status()["lab"]["members"][0]["state"] == "ready"
    live.page.locator('.member[data-member="tiny"] button[data-act="unload"]').click()
    live.page.wait_for_selector('.member[data-member="tiny"][data-state="unloaded"]', timeout=30000)
    status = live.status()
    assert {m["name"]: m["state"] for m in status["lab"]["members"]} == {"tiny": "stopped", "small": "stopped"}
    assert "lab.tiny" not in status
    live.page.locator('.member[data-member="small"] button[data-act="load"]').click()
    live.page.wait_for_selector('.member[data-member="small"][data-state="ready"]', timeout=60000)
    assert live.status()["lab.small"]["state"] == "running"


def test_restart_and_stop_ask_first(live: Live) -> None:
    live.view("overview")
    before = live.status()["oll"]["pid"]
    _card(live, "oll").locator('button[data-act="restart"]').click()
    assert "Restart oll?" in live.page.locator("#confirm-text").inner_text()
    live.page.click('#confirm button[value="cancel"]')
    assert live.status()["oll"]["pid"] == before  # cancelled: nothing happened
    _card(live, "oll").locator('button[data-act="restart"]').click()
    live.page.click("#confirm-ok")
    live.page.wait_for_selector("#toast:has-text('oll restarted')", timeout=120000)
    after = live.status()["oll"]
    assert after["state"] == "running" and after["pid"] != before
    _card(live, "oll").locator('button[data-act="stop"]').click()
    live.page.click("#confirm-ok")
    live.page.wait_for_selector('#cards article[data-name="oll"]', state="detached", timeout=60000)
    assert "oll" not in live.status()


def test_phone_width_and_no_key_anywhere(live: Live) -> None:
    live.page.set_viewport_size({"width": 390, "height": 844})
    try:
        for view in ("overview", "requests", "logs", "playground"):
            live.view(view)
            live.page.wait_for_timeout(300)  # one animation frame of layout: nothing to poll for
            width = live.page.evaluate("document.documentElement.scrollWidth")
            assert width <= 392, f"{view}: the page is {width} px wide on a 390 px screen"
            live.responses.append(live.page.content())
        live.view("overview")
        live.shot("overview-phone")
    finally:
        live.page.set_viewport_size({"width": 1280, "height": 800})
    texts = [r if isinstance(r, str) else _text_of(r) for r in live.responses]
    assert len([t for t in texts if t]) > 10
    for text in texts:
        for key in KEYS:
            assert key not in text
    if os.environ.get("MODELSERVE_README_SHOT"):  # refresh the README's picture from this run
        shutil.copy(SHOTS / "overview.png", ROOT / "docs" / "dashboard.png")
