"""The web UI in a real headless Chromium (Debian's chromium + chromedriver) against a real
`dispatch serve`: log in, live board, close gate on drag, live terminal, plan review, portal on a
phone, refused portal links, markup in titles shown as text. Every page is screenshotted into
docs/screenshots/ and a console error on any page fails the test.

Run by scripts/test (it makes the venv and builds the binary): DISPATCH_BIN names the binary.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "dispatch-server" / "tests" / "pysupport"))
from dispatch_server import DispatchServer  # noqa: E402
SHOTS = ROOT / "docs" / "screenshots"
KEY = "dsp_web_test_key_0123456789abcdef0123456789abcdef"
PASSWORD = "web-test-password-123"
FIXTURES = ROOT / "dispatch-server" / "tests" / "fixtures"


class Server(DispatchServer):
    def __init__(self) -> None:
        super().__init__(KEY, PASSWORD, prefix="dispatch-web-")
        # No agent may start: the tests drive runs through the callback API. (Stored, so the
        # fleet panel can turn it off and on.)
        st, body = self.api("PUT", "/api/spawns/kill-switch", {"enabled": True})
        assert st == 200, body


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def chromium(width: int = 1400, height: int = 900, mobile: bool = False) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tempfile.mkdtemp(prefix='dispatch-chromium-')}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(a)
    if mobile:
        opts.add_experimental_option(
            "mobileEmulation", {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0}}
        )
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(20)
    return d


def no_console_errors(d: webdriver.Chrome, allow: tuple[str, ...] = ()) -> None:
    """Fails on any console error of the page, except expected HTTP refusals named in allow."""
    errors = [
        e["message"]
        for e in d.get_log("browser")
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow)
    ]
    assert not errors, errors


def shot(d: webdriver.Chrome, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def wait(d: webdriver.Chrome, seconds: float = 10) -> WebDriverWait:
    return WebDriverWait(d, seconds, poll_frequency=0.05)


def login(d: webdriver.Chrome, server: Server, next_path: str = "/board") -> None:
    d.get(f"{server.url}{next_path}")
    wait(d).until(EC.presence_of_element_located((By.ID, "password")))
    assert "/login?next=" in d.current_url
    shot(d, "login")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait(d).until(lambda d: "/login" not in d.current_url and d.execute_script("return document.body.dataset.app") == "ready")


def page_ready(d: webdriver.Chrome) -> None:
    """The page's own script (board, issue) finished its set-up."""
    wait(d).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")


def grafana_alert(server: Server, name: str) -> dict:
    payload = json.loads((FIXTURES / "grafana" / "alert-firing.json").read_text())
    for a in payload["alerts"]:
        a["labels"]["alertname"] = name
        a["fingerprint"] = name
        if "annotations" in a:
            a["annotations"]["summary"] = f"{name}: connection refused"
            a["annotations"]["description"] = f"{name}: connection refused"
    st, body = server.api("POST", "/api/loki/webhook", payload)
    assert st == 200, body
    return body


def test_login_board_live_card_and_close_gate(server: Server) -> None:
    d = chromium()
    try:
        # A wrong password is refused on the form.
        d.get(f"{server.url}/login")
        d.find_element(By.ID, "password").send_keys("wrong")
        d.find_element(By.CSS_SELECTOR, "form.login button").click()
        wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".login .error")))
        d.get_log("browser")  # the 401 of the refused login is expected

        login(d, server)
        page_ready(d)
        assert d.current_url.endswith("/board")
        no_console_errors(d)
        before = len(d.find_elements(By.CSS_SELECTOR, ".card"))

        # An alert posted to the webhook appears as a card without a reload.
        marker = d.execute_script("window.__same_page = 1; return 1")
        body = grafana_alert(server, "CheckoutDbDown")
        identifier = body["results"][0]["issueIdentifier"]
        card = wait(d).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, f'.card[data-identifier="{identifier}"]'))
        )
        assert d.execute_script("return window.__same_page") == marker, "the page was not reloaded"
        created = {r["issueIdentifier"] for r in body["results"] if r.get("action") == "created"}
        wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == before + len(created))
        ids = [c.get_attribute("data-identifier") for c in d.find_elements(By.CSS_SELECTOR, ".card")]
        assert len(ids) == len(set(ids)), f"a card is shown twice: {ids}"
        shot(d, "board")

        # Dragging the error issue to Done: the close gate refuses, the card goes back, and the
        # reason is shown.
        d.execute_script(
            """
            const card = document.querySelector(`.card[data-identifier="${arguments[0]}"]`);
            const col = [...document.querySelectorAll('.column')].find(c => c.dataset.name === 'Done');
            const dt = new DataTransfer();
            card.dispatchEvent(new DragEvent('dragstart', {bubbles: true, dataTransfer: dt}));
            col.dispatchEvent(new DragEvent('dragover', {bubbles: true, cancelable: true, dataTransfer: dt}));
            col.dispatchEvent(new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: dt}));
            """,
            identifier,
        )
        toast = wait(d).until(EC.visibility_of_element_located((By.ID, "toast")))
        assert identifier in toast.text and "Done" in toast.text, toast.text
        assert "fix" in toast.text.lower(), toast.text
        col = card.find_element(By.XPATH, "ancestor::div[contains(@class,'column')]")
        assert col.get_attribute("data-name") != "Done"
        shot(d, "board-close-gate")
        st, issue = server.api("GET", f"/api/issues/{identifier}")
        assert issue["status"]["name"] != "Done"
        no_console_errors(d, allow=("403",))
    finally:
        d.quit()


def test_issue_page_live_terminal_plan_review_and_safe_markup(server: Server) -> None:
    st, issue = server.api(
        "POST",
        "/api/issues",
        {
            "title": "Export <script>alert('x')</script> breaks",
            "description": "**Steps**\n\n1. export\n\n<img src=x onerror=alert(1)> [bad](javascript:alert(1))",
        },
    )
    assert st == 201, issue
    ident = issue["identifier"]
    st, run = server.api("POST", f"/api/issues/{ident}/runs", {"workflow_type": "investigate"})
    assert st in (200, 201), run
    d = chromium()
    try:
        login(d, server, f"/issue/{ident}")
        page_ready(d)
        h1 = d.find_element(By.TAG_NAME, "h1")
        assert h1.text == "Export <script>alert('x')</script> breaks"
        assert d.execute_script("return document.querySelectorAll('main script').length") == 0
        assert d.execute_script("return document.querySelectorAll('#description img, #description a[href^=javascript]').length") == 0
        assert "Steps" in d.find_element(By.ID, "description").text
        no_console_errors(d)

        # Terminal chunks posted by the agent arrive live, styled by kind.
        for seq, line in enumerate(["[TOOL] Read src/export.ts", "[RESULT] 120 lines", "\x1b[32m[COMPLETED] done\x1b[0m"], 1):
            st, body = server.api("POST", f"/api/issues/{ident}/terminal", {"content": line + "\n", "seq": seq})
            assert st in (200, 201), body
        wait(d).until(lambda d: "[COMPLETED] done" in d.find_element(By.ID, "terminal").text)
        assert d.find_elements(By.CSS_SELECTOR, "#terminal .tool")
        assert d.find_elements(By.CSS_SELECTOR, "#terminal .done")
        assert "\x1b" not in d.find_element(By.ID, "terminal").text
        shot(d, "issue-terminal")

        # The agent submits a plan; the person approves it on the page.
        st, body = server.api("POST", f"/api/issues/{ident}/plan", {"action": "submit", "content": "## Plan\n\n1. fix the export"})
        assert st == 200, body
        d.refresh()
        wait(d).until(EC.element_to_be_clickable((By.ID, "approve-plan")))
        shot(d, "issue-plan-review")
        d.find_element(By.ID, "auto-implement").click()  # no implementation run for this test
        d.find_element(By.ID, "approve-plan").click()
        wait(d).until(lambda d: "Plan · approved" in d.page_source)
        st, after = server.api("GET", f"/api/issues/{ident}")
        assert after["plan_status"] == "approved", after
        no_console_errors(d)
    finally:
        d.quit()


def test_portal_on_a_phone_and_refused_links(server: Server) -> None:
    st, acme = server.api("POST", "/api/customers", {"name": "Acme Corp", "brandColor": "#ff5500"})
    assert st == 201, acme
    acme = acme["customer"]
    st, other = server.api("POST", "/api/customers", {"name": "Globex"})
    assert st == 201, other
    other = other["customer"]
    st, shared = server.api("POST", "/api/issues", {"title": "Invoices arrive twice", "description": "We are on it."})
    st, private = server.api("POST", "/api/issues", {"title": "Globex only issue"})
    st, _ = server.api("POST", f"/api/issues/{shared['identifier']}/watchers", {"customerId": acme["id"]})
    assert st in (200, 201), _
    st, _ = server.api("POST", f"/api/issues/{private['identifier']}/watchers", {"customerId": other["id"]})
    st, _ = server.api("POST", "/api/comments", {"issueId": shared["id"], "body": "Fix is **deploying**."})
    token = acme["portalToken"]
    slug = acme["slug"]

    d = chromium(390, 844, mobile=True)
    try:
        d.get(f"{server.url}/portal/{slug}?token={token}")
        assert "Acme Corp" in d.find_element(By.TAG_NAME, "h1").text
        assert "Invoices arrive twice" in d.page_source
        assert "Globex only issue" not in d.page_source
        # Readable on a phone: nothing wider than the screen.
        assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        no_console_errors(d)
        shot(d, "portal-phone")
        d.find_element(By.PARTIAL_LINK_TEXT, "Invoices arrive twice").click()
        wait(d).until(lambda d: "deploying" in d.page_source)
        shot(d, "portal-issue-phone")
        no_console_errors(d)

        # Another customer's issue and a wrong token are refused.
        d.get(f"{server.url}/portal/{slug}/issue/{private['identifier']}?token={token}")
        assert "403" in d.find_element(By.TAG_NAME, "h1").text
        assert "Globex only issue" not in d.page_source
        d.get(f"{server.url}/portal/{slug}?token={'0' * 64}")
        assert "401" in d.find_element(By.TAG_NAME, "h1").text
        assert "Invoices" not in d.page_source
        no_console_errors(d, allow=("401", "403"))
    finally:
        d.quit()


def test_fleet_kill_switch_and_customers_pages(server: Server) -> None:
    d = chromium()
    try:
        login(d, server, "/fleet")
        page_ready(d)
        assert "Kill switch is ON" in d.page_source
        shot(d, "fleet")
        no_console_errors(d)
        # Resume, then stop again (with the confirmation dialog), through the panel.
        d.find_element(By.ID, "kill-switch-toggle").click()
        wait(d).until(lambda d: "Kill switch is off" in d.page_source)
        assert server.api("GET", "/api/spawns/kill-switch")[1]["enabled"] is False
        page_ready(d)
        d.find_element(By.ID, "kill-switch-toggle").click()
        wait(d).until(EC.alert_is_present()).accept()
        wait(d).until(lambda d: "Kill switch is ON" in d.page_source)
        assert server.api("GET", "/api/spawns/kill-switch")[1]["enabled"] is True
        no_console_errors(d)
        d.get(f"{server.url}/customers")
        assert "Acme Corp" in d.page_source or "No customers" in d.page_source
        shot(d, "customers")
        no_console_errors(d)
    finally:
        d.quit()
