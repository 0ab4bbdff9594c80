"""The official MCP Python SDK (`mcp`) as a client of a real `dispatch serve` over streamable HTTP:
list tools and resources, create an issue, search it, post a plan, approve it through the REST API,
read it with get_approved_plan, see a kill-switch refusal as a tool error, report a blocker.

Run by scripts/test (it makes the venv and builds the binary): DISPATCH_BIN names the binary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

KEY = "dsp_mcp_test_key_0123456789abcdef0123456789abcdef"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pysupport"))
from dispatch_server import DispatchServer  # noqa: E402


class Server(DispatchServer):
    def __init__(self) -> None:
        super().__init__(KEY, "mcp-test-password-123", prefix="dispatch-mcp-", DISPATCH_WORKERS="false")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@asynccontextmanager
async def session(server: Server, key: str = KEY) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        async with streamable_http_client(f"{server.url}/api/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s


def result(r: Any) -> dict[str, Any]:
    assert not r.is_error, r.content
    data = r.structured_content
    assert isinstance(data, dict)
    # The text content says the same, for clients that only read text.
    assert json.loads(r.content[0].text) == data
    return data


def describe(e: BaseException) -> str:
    """The exception and everything it groups or wraps, as text."""
    parts = [repr(e)]
    for sub in getattr(e, "exceptions", ()):
        parts.append(describe(sub))
    for linked in (e.__cause__, e.__context__):
        if linked is not None and linked is not e:
            parts.append(repr(linked))
    return " | ".join(parts)


def error_text(r: Any) -> str:
    assert r.is_error, r
    return str(r.content[0].text)


def test_the_sdk_drives_an_issue_from_creation_to_a_blocker(server: Server) -> None:
    async def scenario() -> None:
        async with session(server) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert len(tools) == 25
            assert tools["create_issue"].input_schema["required"] == ["title"]
            assert "query" in tools["search_issues"].input_schema["properties"]

            created = result(
                await s.call_tool(
                    "create_issue",
                    {
                        "title": "Invoices PDF shows the wrong currency symbol",
                        "description": "EUR customers see $ on the invoice PDF.",
                        "priority": "P2",
                        "slackChannelId": "C0INITECH",
                        "slackChannelName": "initech",
                    },
                )
            )
            ident = created["identifier"]
            assert created["customerName"] == "initech"
            assert "/portal/slack-c0initech/issue/" in created["portalUrl"]

            found = result(await s.call_tool("search_issues", {"query": "invoice currency"}))
            assert found["issues"][0]["identifier"] == ident

            resources = await s.list_resources()
            uris = {str(r.uri) for r in resources.resources}
            assert "dispatch://fleet" in uris and f"dispatch://issue/{ident}" in uris
            templates = await s.list_resource_templates()
            assert templates.resource_templates[0].uri_template == "dispatch://issue/{identifier}"
            read = await s.read_resource(f"dispatch://issue/{ident}")
            assert read.contents[0].text.startswith(f"# {ident}: Invoices PDF")

            posted = result(
                await s.call_tool(
                    "post_plan",
                    {"identifier": ident, "content": "Format amounts with the invoice's currency."},
                )
            )
            assert posted["planStatus"] == "awaiting_review"
            assert "awaiting_review" in error_text(await s.call_tool("get_approved_plan", {"identifier": ident}))

            st, body = server.api("POST", f"/api/issues/{ident}/plan", {"action": "approve", "approvedBy": "Priya"})
            assert st == 200, body
            plan = result(await s.call_tool("get_approved_plan", {"identifier": ident}))
            assert plan["approvedBy"] == "Priya"
            assert "invoice's currency" in plan["planContent"]

            st, body = server.api("PUT", "/api/spawns/kill-switch", {"enabled": True})
            assert st == 200, body
            refused = await s.call_tool("dispatch_investigation", {"identifier": ident})
            assert refused.structured_content["code"] == "GATE_DENIED"
            assert "kill switch" in error_text(refused)
            fleet = result(await s.call_tool("get_fleet_status", {}))
            assert fleet["killSwitch"] is True and fleet["queued"] == 0

            blocked = result(
                await s.call_tool(
                    "report_blocker",
                    {"identifier": ident, "reason": "Need the list of currencies we bill in", "category": "missing_dependency"},
                )
            )
            assert blocked["blockedReason"] == "[missing_dependency] Need the list of currencies we bill in"
            st, issue = server.api("GET", f"/api/issues/{ident}")
            assert st == 200 and issue["agent_status"] == "blocked"

            # Bad arguments come back as tool errors the model can read, not protocol errors.
            bad = await s.call_tool("update_issue", {"identifier": ident, "priority": "urgent"})
            assert bad.structured_content["field"] == "priority"
            assert "NOT_FOUND" in error_text(await s.call_tool("get_issue", {"identifier": "NOPE-404"}))

    anyio.run(scenario)


def test_the_high_level_client_and_a_wrong_key(server: Server) -> None:
    async def scenario() -> None:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
            async with Client(streamable_http_client(f"{server.url}/api/mcp", http_client=http)) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert {"get_issue", "dispatch_triage", "cancel_run"} <= names
                made = await c.call_tool("create_issue", {"title": "Dark mode toggle forgets its state"})
                assert not made.is_error
        statuses: list[int] = []

        async def record(r: httpx2.Response) -> None:
            statuses.append(r.status_code)

        wrong = {"Authorization": "Bearer wrong-key-0123456789abcdef"}
        with pytest.raises(BaseException) as failed:
            async with httpx2.AsyncClient(headers=wrong, timeout=30, event_hooks={"response": [record]}) as http:
                async with streamable_http_client(f"{server.url}/api/mcp", http_client=http) as (read, write):
                    async with ClientSession(read, write) as s:
                        await s.initialize()
        assert statuses == [401], statuses
        assert "MCPError" in describe(failed.value), describe(failed.value)

    anyio.run(scenario)
