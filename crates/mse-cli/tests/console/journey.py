"""The owner's and the operator's journey in the web console, in headless
Chromium driven by Playwright. The Rust test (tests/console.rs) starts the
platform and runs `mse`; this script drives the browser, and the two talk
over stdin/stdout lines: this script prints `READY`, `WATCHING`,
`STOPPED <uuid>` and `DONE`; it reads `DEPLOYED <uuid>`, `CALLED <path>` and
`AGREED`.

Every wait is bounded; any failed check raises, so the script exits non-zero.
"""

import os
import sys

from playwright.sync_api import expect, sync_playwright

URL = os.environ["CONSOLE_URL"]
USER_TOKEN = os.environ["USER_TOKEN"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]
OTHER_APP = os.environ["OTHER_APP"]
HOSTILE = os.environ["HOSTILE_TEXT"]
ARTIFACTS = os.environ["ARTIFACTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 120_000


def say(line):
    print(line, flush=True)


def hear(prefix):
    line = sys.stdin.readline().strip()
    if not line.startswith(prefix):
        raise SystemExit(f"expected {prefix!r} from the test, got {line!r}")
    return line[len(prefix):].strip()


def shot(page, name):
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def sign_in(page, token):
    page.goto(URL)
    expect(page).to_have_title("Sign in — MSE console")
    # With the keyboard only: the field has the focus, Enter submits.
    expect(page.get_by_label("API token")).to_be_focused()
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Signed in as")).to_be_visible()
    assert token not in page.url, "the token is never in a URL"
    stored = page.evaluate("sessionStorage.getItem('mse-console-token')")
    assert stored == token, "the token is kept in session storage"
    cookies = page.context.cookies()
    assert not cookies, f"no cookie is set: {cookies}"


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)
        dialogs = []

        def accept(dialog):
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        scripts_run = []
        page.on("console", lambda m: scripts_run.append(m.text))

        # The console's headers: strict CSP, no framing, no sniffing.
        response = page.goto(URL)
        headers = response.headers
        csp = headers.get("content-security-policy", "")
        for part in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"]:
            assert part in csp, f"CSP has {part}: {csp}"
        assert "unsafe-inline" not in csp, csp
        assert headers.get("x-frame-options") == "DENY", headers
        assert headers.get("x-content-type-options") == "nosniff", headers
        assert page.locator("script:not([src])").count() == 0, "no inline script"

        # A wrong token is refused, in words.
        page.get_by_label("API token").fill("mse_wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert").filter(has_text="refused")).to_be_visible()

        sign_in(page, USER_TOKEN)
        expect(page).to_have_title("Apps — MSE console")
        expect(page.get_by_role("alert").filter(has_text="SIMULATION")).to_be_visible()
        say("READY")

        # The CLI deploys; the app appears and turns running, no reload.
        uuid = hear("DEPLOYED")
        row = page.locator(f"tr[data-app='{uuid}']")
        expect(row).to_be_visible(timeout=WAIT_MS)
        expect(row.locator("[data-status]")).to_have_attribute("data-status", "running", timeout=WAIT_MS)
        assert page.locator(f"tr[data-app='{OTHER_APP}']").count() == 0, "another user's app never shows"
        shot(page, "apps")

        # One app: its fields, how to verify it, its log as it grows.
        row.get_by_role("link").first.click()
        expect(page.locator("#verify-line")).to_contain_text("mse verify")
        expect(page.locator("#verify-line")).to_contain_text("--fingerprint")
        fields = page.locator("#app-fields")
        for label in ["uuid", "fingerprint", "trust mode", "certificate origin", "sandbox", "expires"]:
            expect(fields.get_by_text(label, exact=True)).to_be_visible()
        log = page.locator("#log")
        expect(log).to_contain_text("app healthy", timeout=WAIT_MS)
        # The app's hostile line is shown as text, and never runs.
        expect(log).to_contain_text(HOSTILE, timeout=WAIT_MS)
        assert page.evaluate("window.__pwned === undefined"), "a log line ran as script"
        assert page.locator("#log img").count() == 0, "a log line became markup"
        # The log follows: a request made now shows up without a reload.
        say("WATCHING")
        marker = hear("CALLED")
        expect(log).to_contain_text(marker, timeout=WAIT_MS)
        shot(page, "app")

        # Stop it from the console, after confirming; the CLI agrees.
        page.get_by_role("button", name="Stop").click()
        assert dialogs and "Stop" in dialogs[-1], dialogs
        expect(page.locator("#app-fields [data-status]")).to_have_attribute(
            "data-status", "stopped", timeout=WAIT_MS
        )
        say(f"STOPPED {uuid}")
        hear("AGREED")

        # Remove it; it is gone from the list, even with every app shown.
        page.get_by_role("button", name="Remove").click()
        expect(page).to_have_title("Apps — MSE console")
        page.get_by_label("show stopped and failed apps too").check()
        expect(page.locator(f"tr[data-app='{uuid}']")).to_have_count(0)

        # Projects and tokens.
        page.get_by_role("link", name="Projects").click()
        expect(page).to_have_title("Projects — MSE console")
        page.get_by_label("Name").fill("shop")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_role("cell", name="shop")).to_be_visible()
        shot(page, "projects")
        page.get_by_role("link", name="Tokens").click()
        expect(page).to_have_title("Tokens — MSE console")
        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Create").click()
        secret = page.locator("#new-token-secret").inner_text()
        assert secret.startswith("mse_"), secret
        page.get_by_role("button", name="Revoke token laptop").click()
        expect(page.get_by_role("cell", name="laptop")).to_have_count(0)
        shot(page, "tokens")

        # Signing out forgets the token.
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_title("Sign in — MSE console")
        assert page.evaluate("sessionStorage.getItem('mse-console-token')") is None

        # The operator's views.
        sign_in(page, ADMIN_TOKEN)
        page.get_by_role("link", name="Users").click()
        expect(page).to_have_title("Users — MSE console")
        expect(page.get_by_role("cell", name="alice", exact=True)).to_be_visible()
        expect(page.get_by_role("cell", name="bob", exact=True)).to_be_visible()
        shot(page, "users")
        page.get_by_role("link", name="Resources").click()
        expect(page.get_by_role("cell", name="free", exact=True)).to_be_visible()
        shot(page, "resources")
        page.get_by_role("link", name="Catalog").click()
        expect(page.get_by_text("ghcr.io/cosmian/mse-flask:20230124182826")).to_be_visible()
        shot(page, "catalog")
        page.get_by_role("link", name="Node hosts").click()
        expect(page).to_have_title("Node hosts — MSE console")
        expect(page.locator("tbody tr td").first).to_have_text("local")
        shot(page, "nodes")
        page.get_by_role("link", name="Platform").click()
        expect(page.get_by_text("simulation — NO HARDWARE PROTECTION", exact=True)).to_be_visible()
        shot(page, "platform")

        assert not any("__pwned" in m for m in scripts_run), scripts_run
        browser.close()
    say("DONE")


if __name__ == "__main__":
    main()
