"""Loads one page in headless Chromium through Playwright and reports, as one
JSON object on stdout, what the browser itself said: the network error of the
main navigation (`net::ERR_CERT_AUTHORITY_INVALID`, ...), the HTTP status, the
DOM after load and whether a screenshot was taken.

Usage: browser.py URL OUT_DIR [RESOLVER_RULE]
The environment's HOME holds the NSS database Chromium trusts roots from.
"""

import json
import os
import re
import shutil
import sys

from playwright.sync_api import Error, sync_playwright

NET_ERROR = re.compile(r"net::ERR_[A-Z0-9_]+")


def main():
    url, out_dir = sys.argv[1], sys.argv[2]
    rule = sys.argv[3] if len(sys.argv) > 3 else None
    program = os.environ.get("MSE_TEST_CHROMIUM") or "chromium"
    executable = shutil.which(program) or program
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    if rule:
        args.append(f"--host-resolver-rules={rule}")
    result = {"load_error": None, "status": None, "dom": "", "screenshot": False}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=args, env=dict(os.environ))
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        failures = []

        def failed(request):
            if request.is_navigation_request() and request.frame == page.main_frame:
                failures.append(request.failure)

        page.on("requestfailed", failed)
        try:
            response = page.goto(url, wait_until="load", timeout=45_000)
            result["status"] = response.status if response else None
        except Error as error:
            # The navigation request's own failure text is the browser's
            # verdict; the error of goto carries the same code.
            reported = next((f for f in failures if f), None)
            if reported is None:
                match = NET_ERROR.search(error.message)
                reported = match.group(0) if match else error.message.splitlines()[0]
            result["load_error"] = reported
        if result["load_error"] is None:
            result["dom"] = page.content()
            page.screenshot(path=os.path.join(out_dir, "screenshot.png"))
            result["screenshot"] = True
        browser.close()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
