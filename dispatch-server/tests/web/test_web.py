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
from selenium.common.exceptions import StaleElementReferenceException
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
    # A page that reloads under the wait leaves stale elements behind: look again.
    return WebDriverWait(d, seconds, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))


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


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def fetch(url: str) -> tuple[int, bytes, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def test_customers_create_health_filters_token_and_branding(server: Server) -> None:
    d = chromium()
    try:
        login(d, server, "/customers")
        page_ready(d)
        no_console_errors(d)

        # Create a customer through the dialog: the slug follows the name, the page opens.
        d.find_element(By.ID, "new-customer-open").click()
        d.find_element(By.ID, "nc-name").send_keys("Initech Ltd.")
        assert d.find_element(By.ID, "nc-slug").get_attribute("placeholder") == "initech-ltd"
        shot(d, "customers-new")
        d.find_element(By.CSS_SELECTOR, "#new-customer-form button[type=submit]").click()
        wait(d).until(lambda d: d.current_url.endswith("/customers/initech-ltd"))
        page_ready(d)
        assert d.find_element(By.TAG_NAME, "h1").text == "Initech Ltd."
        st, body = server.api("GET", "/api/customers/initech-ltd")
        assert st == 200, body
        cust = body["customer"]
        assert cust["brandColor"] == "#6366f1"
        # No issues yet: a perfect score, green.
        score = d.find_element(By.ID, "health-score")
        assert score.text == "100" and score.get_attribute("data-band") == "healthy"
        assert d.execute_script("return getComputedStyle(arguments[0]).color", score) == "rgb(34, 197, 94)"
        no_console_errors(d)

        # Issues of this customer: one urgent, one answered, one unanswered low.
        made = {}
        for title, prio in (("Payroll export crashes", "P1"), ("Stapler request", "P4"), ("TPS report cover", "P3")):
            st, issue = server.api("POST", "/api/issues", {"title": title, "priority": prio, "customerId": cust["id"]})
            assert st == 201, issue
            made[title] = issue
        st, _ = server.api("POST", "/api/comments", {"issueId": made["Stapler request"]["id"], "body": "On its way."})
        assert st in (200, 201), _
        d.refresh()
        page_ready(d)
        # One open P1: the score drops by 5 and stays green; the counts show on the cards.
        assert d.find_element(By.ID, "health-score").text == "95"
        rows = d.find_elements(By.CSS_SELECTOR, "#customer-issues tbody tr[data-identifier]")
        assert [r.get_attribute("data-identifier") for r in rows][0] == made["Payroll export crashes"]["identifier"], "P1 first"
        assert len(rows) == 3
        assert "Stapler request" in d.find_element(By.ID, "activity").text or "On its way." in d.find_element(By.ID, "activity").text
        assert "On its way." in d.find_element(By.ID, "activity").text
        shot(d, "customer")

        # The filter tabs.
        d.find_element(By.CSS_SELECTOR, '.tabs a[data-filter="critical"]').click()
        wait(d).until(lambda d: d.find_element(By.ID, "customer-issues").get_attribute("data-filter") == "critical")
        idents = [r.get_attribute("data-identifier") for r in d.find_elements(By.CSS_SELECTOR, "#customer-issues tbody tr[data-identifier]")]
        assert idents == [made["Payroll export crashes"]["identifier"]]
        d.find_element(By.CSS_SELECTOR, '.tabs a[data-filter="unresponded"]').click()
        wait(d).until(lambda d: d.find_element(By.ID, "customer-issues").get_attribute("data-filter") == "unresponded")
        idents = {r.get_attribute("data-identifier") for r in d.find_elements(By.CSS_SELECTOR, "#customer-issues tbody tr[data-identifier]")}
        assert idents == {made["Payroll export crashes"]["identifier"], made["TPS report cover"]["identifier"]}
        d.find_element(By.CSS_SELECTOR, '.tabs a[data-filter="stale"]').click()
        wait(d).until(lambda d: d.find_element(By.ID, "customer-issues").get_attribute("data-filter") == "stale")
        assert not d.find_elements(By.CSS_SELECTOR, "#customer-issues tbody tr[data-identifier]")
        no_console_errors(d)

        # Copy the portal link; the customer watches the urgent issue.
        st, _ = server.api("POST", f"/api/issues/{made['Payroll export crashes']['identifier']}/watchers", {"customerId": cust["id"]})
        assert st in (200, 201), _
        page_ready(d)
        old_link = d.find_element(By.ID, "portal-link").get_attribute("value")
        assert old_link == f"{server.url}/portal/initech-ltd?token={cust['portalToken']}"
        copy_button = d.find_element(By.CSS_SELECTOR, "[data-copy-from=portal-link]")
        copy_button.click()
        wait(d).until(lambda d: copy_button.get_attribute("data-copied") == old_link)
        assert fetch(old_link)[0] == 200

        # Regenerate the token: the old link is refused at once, the new one works.
        d.find_element(By.ID, "regenerate-token").click()
        wait(d).until(EC.alert_is_present()).accept()
        wait(d).until(lambda d: d.find_element(By.ID, "portal-link").get_attribute("value") != old_link)
        new_link = d.find_element(By.ID, "portal-link").get_attribute("value")
        assert fetch(old_link)[0] == 401
        assert fetch(new_link)[0] == 200
        assert server.api("GET", "/api/customers/initech-ltd")[1]["customer"]["portalToken"] in new_link
        no_console_errors(d)

        # Change the brand colour and logo: the portal shows them.
        picker = d.find_element(By.ID, "cs-color")
        picker.clear()
        picker.send_keys("#ff5500")
        logo = d.find_element(By.ID, "cs-logo")
        logo.clear()
        logo.send_keys("https://example.invalid/initech.png")
        d.find_element(By.CSS_SELECTOR, "#customer-settings button[type=submit]").click()
        wait(d).until(lambda d: d.find_element(By.ID, "customer-color").get_attribute("data-value") == "#ff5500")
        after = server.api("GET", "/api/customers/initech-ltd")[1]["customer"]
        assert after["brandColor"] == "#ff5500" and after["logoUrl"] == "https://example.invalid/initech.png"
        d.execute_script("window.scrollTo(0, 0)")
        shot(d, "customer-branding")
        # The logo's host does not exist: its load failure is the only console error allowed.
        no_console_errors(d, allow=("example.invalid",))

        # A wrong colour is refused with the server's reason, not saved.
        picker = d.find_element(By.ID, "cs-color")
        picker.clear()
        picker.send_keys("orange")
        d.execute_script("document.getElementById('cs-color').removeAttribute('pattern')")
        d.find_element(By.CSS_SELECTOR, "#customer-settings button[type=submit]").click()
        wait(d).until(lambda d: d.find_element(By.ID, "cs-error").text != "")
        assert "colour" in d.find_element(By.ID, "cs-error").text.lower()
        assert server.api("GET", "/api/customers/initech-ltd")[1]["customer"]["brandColor"] == "#ff5500"
        no_console_errors(d, allow=("example.invalid", "400"))

        d.get(new_link)
        assert d.execute_script("return getComputedStyle(document.documentElement).getPropertyValue('--brand').trim()") == "#ff5500"
        assert d.find_element(By.CSS_SELECTOR, "header.top img").get_attribute("src") == "https://example.invalid/initech.png"
        no_console_errors(d, allow=("example.invalid",))

        # The list shows the customer with its score colour and counts.
        d.get(f"{server.url}/customers")
        page_ready(d)
        row = d.find_element(By.CSS_SELECTOR, 'tr[data-slug="initech-ltd"]')
        assert "95" in row.text and "Initech Ltd." in row.text
        assert row.find_element(By.CSS_SELECTOR, ".score").get_attribute("class").endswith("band-healthy")
        shot(d, "customers")
        no_console_errors(d)
    finally:
        d.quit()


def test_share_previews_are_generated_images(server: Server) -> None:
    st, c = server.api("POST", "/api/customers", {"name": "Umbrella", "brandColor": "#aa00ff"})
    assert st == 201, c
    c = c["customer"]
    st, issue = server.api("POST", "/api/issues", {"title": "Lab doors stay open", "description": "Since Tuesday.", "priority": "P2", "customerId": c["id"]})
    assert st == 201, issue
    st, _ = server.api("POST", f"/api/issues/{issue['identifier']}/watchers", {"customerId": c["id"]})
    assert st in (200, 201), _
    d = chromium(390, 844, mobile=True)
    try:
        d.get(f"{server.url}/portal/{c['slug']}/issue/{issue['identifier']}?token={c['portalToken']}")
        meta = {
            m.get_attribute("property") or m.get_attribute("name"): m.get_attribute("content")
            for m in d.find_elements(By.CSS_SELECTOR, "meta[property], meta[name]")
        }
        assert meta["og:title"] == f"{issue['identifier']}: Lab doors stay open", meta
        assert meta["og:description"] == "Since Tuesday."
        assert meta["twitter:card"] == "summary_large_image"
        image = meta["og:image"]
        assert image.startswith(f"{server.url}/api/og/issue/{issue['identifier']}?"), image
        no_console_errors(d)
        # The crawler gets a 1200×630 PNG from the link; without the token it gets nothing.
        st, data, headers = fetch(image)
        assert st == 200 and headers["content-type"] == "image/png"
        assert png_size(data) == (1200, 630)
        assert fetch(f"{server.url}/api/og/issue/{issue['identifier']}")[0] == 401
        # The board page's preview is the generic card.
        d.get(f"{server.url}/portal/{c['slug']}?token={c['portalToken']}")
        image = d.find_element(By.CSS_SELECTOR, 'meta[property="og:image"]').get_attribute("content")
        assert "color=%23aa00ff" in image, image
        st, data, headers = fetch(image)
        assert st == 200 and png_size(data) == (1200, 630)
        assert "max-age" in headers["cache-control"] and headers["etag"]
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "og-portal.png").write_bytes(data)
        st, data, _ = fetch(f"{server.url}/api/og/issue/{issue['identifier']}?slug={c['slug']}&token={c['portalToken']}")
        (SHOTS / "og-issue.png").write_bytes(data)
    finally:
        d.quit()
