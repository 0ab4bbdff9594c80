"""The orchestrator terminal at `/` in a real headless Chromium against `dispatch serve`, whose
model is a scripted fake of the streaming Messages API: an answer streams in, tool calls show as
lines, a proposal card is confirmed with its button (one run queued), the session comes back
after a reload, and Esc cancels a slow turn.

Run by scripts/test with the other browser tests (DISPATCH_BIN names the binary).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_web import PASSWORD, KEY, chromium, login, no_console_errors, shot, wait  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "dispatch-server" / "tests" / "pysupport"))
from dispatch_server import DispatchServer  # noqa: E402


def sse(text: str, tool: tuple[str, str, dict] | None = None) -> bytes:
    events: list[dict] = [
        {"type": "message_start", "message": {"id": "msg_web", "type": "message", "role": "assistant",
                                              "model": "claude-web-fake", "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 120, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for w in text.split(" "):
        events.append({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w + " "}})
    events.append({"type": "content_block_stop", "index": 0})
    stop = "end_turn"
    if tool:
        tid, name, args = tool
        events.append({"type": "content_block_start", "index": 1,
                       "content_block": {"type": "tool_use", "id": tid, "name": name, "input": {}}})
        events.append({"type": "content_block_delta", "index": 1,
                       "delta": {"type": "input_json_delta", "partial_json": json.dumps(args)}})
        events.append({"type": "content_block_stop", "index": 1})
        stop = "tool_use"
    events.append({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 30}})
    events.append({"type": "message_stop"})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


class Fake:
    """The Messages API, scripted by how far the conversation has got."""

    def __init__(self) -> None:
        self.slow_reached = threading.Event()
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                msgs = body["messages"]
                last = msgs[-1]["content"][0]
                said = last.get("text", "") if last["type"] == "text" else ""
                assistants = sum(1 for m in msgs if m["role"] == "assistant")
                if "slow" in said:
                    fake.slow_reached.set()
                    fake.release.wait(60)
                    reply = sse("too late")
                elif assistants == 0:
                    reply = sse("Let me search first.", ("toolu_w1", "search_missions", {"query": "checkout"}))
                elif assistants == 1:
                    reply = sse("Nothing like it is open.", ("toolu_w2", "dispatch_investigation",
                                                              {"title": "Checkout times out",
                                                               "description": "p99 above 30 s since Tuesday",
                                                               "priority": "P2"}))
                else:
                    reply = sse("I proposed an investigation of Checkout times out. Confirm it below.")
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                try:
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.http.shutdown()


@pytest.fixture(scope="module")
def fake():
    f = Fake()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def server(fake: Fake):
    s = DispatchServer(KEY, PASSWORD, prefix="dispatch-terminal-", ANTHROPIC_API_KEY="sk-ant-web-test",
                       ANTHROPIC_BASE_URL=fake.url, ORCHESTRATOR_MODEL="claude-web-fake",
                       DISPATCH_WORKERS="false")
    yield s
    s.stop()


def ask(d, text: str) -> None:
    box = d.find_element(By.ID, "term-prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def test_terminal_streams_proposes_confirms_restores_and_cancels(server: DispatchServer, fake: Fake) -> None:
    d = chromium()
    try:
        login(d, server, "/")
        wait(d).until(lambda d: d.execute_script("return document.body.dataset.terminal") == "ready")
        ask(d, "checkout keeps timing out, look into it")
        card = wait(d, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, ".proposal button[data-action=confirm]"))
        wait(d).until(lambda d: "Confirm it below." in d.find_element(By.ID, "term-log").text)
        log = d.find_element(By.ID, "term-log").text
        assert "search_missions(query: checkout)" in log, log
        assert "dispatch_investigation(" in log, log
        assert "Proposal: investigation of a new issue “Checkout times out” (P2)" in log, log
        assert "gates: allowed now" in log, log
        assert "claude-web-fake" == d.find_element(By.ID, "term-model").text
        assert "out 90 tokens" in d.find_element(By.ID, "term-usage").text
        # Three answers, streamed word by word into the page, are one element each.
        assert len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant")) == 3
        st, stats = server.api("GET", "/api/spawns/stats")
        assert stats["queued"] == 0, stats
        shot(d, "terminal-proposal")

        card.click()
        outcome = wait(d).until(lambda d: d.find_element(By.CSS_SELECTOR, ".proposal .outcome"))
        assert "dispatched" in outcome.text, outcome.text
        st, stats = server.api("GET", "/api/spawns/stats")
        assert stats["queued"] == 1, stats

        # A reload restores the conversation and the decided proposal.
        d.refresh()
        wait(d).until(lambda d: d.execute_script("return document.body.dataset.terminal") == "ready")
        log = d.find_element(By.ID, "term-log").text
        assert "checkout keeps timing out, look into it" in log, log
        assert "Confirm it below." in log
        assert len(d.find_elements(By.CSS_SELECTOR, ".proposal.decided")) == 1
        assert not d.find_elements(By.CSS_SELECTOR, ".proposal button")
        shot(d, "terminal")

        # Esc cancels a turn the model is slow to answer; the session is free again after.
        ask(d, "a slow question")
        assert fake.slow_reached.wait(20)
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wait(d).until(lambda d: "[cancelled]" in d.find_element(By.ID, "term-log").text)
        fake.release.set()
        sid = d.execute_script("return localStorage.getItem('dispatch.orchestrator.session')")
        deadline = time.monotonic() + 20
        while server.api("GET", f"/api/orchestrator?sessionId={sid}")[1]["busy"]:
            assert time.monotonic() < deadline, "the cancelled turn still holds the session"
            time.sleep(0.05)
        ask(d, "/status")
        # Markdown is rendered as elements: bold, a list (never HTML from the text).
        fleet = wait(d).until(lambda d: d.find_element(By.XPATH, "//div[contains(@class,'msg')]//strong[text()='Fleet']"))
        assert "**" not in fleet.find_element(By.XPATH, "./ancestor::div[contains(@class,'msg')]").text
        assert d.find_elements(By.CSS_SELECTOR, ".msg.md ul li strong")
        # Markup in a message or an answer is text.
        ask(d, "/search <img src=x onerror=window.pwned=1> `code` **b**")
        wait(d).until(lambda d: "No issues." in d.find_element(By.ID, "term-log").text)
        assert not d.find_elements(By.CSS_SELECTOR, "#term-log img")
        assert d.execute_script("return window.pwned") is None
        no_console_errors(d)
        # The fleet panel lists the agent the confirmation queued.
        d.get(f"{server.url}/fleet")
        row = wait(d).until(lambda d: d.find_element(By.CSS_SELECTOR, "table.agents tbody tr"))
        assert "Checkout times out" in row.text and "investigate" in row.text, row.text
        no_console_errors(d)
    finally:
        d.quit()
