"""Drives rlmd's web console in a real headless browser (Debian's chromium, through
Playwright). Usage: console.py BASE_URL CASE [ARG]. Prints one JSON object: what the page
showed, and every console error and page error seen.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

base, case = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else None
CHROMIUM = os.environ.get("RLMD_TEST_CHROMIUM", "/usr/bin/chromium")
WAIT = 60_000  # ms: generous, for a loaded two-core CI machine


def loads(page, out):
    page.goto(base + "/")
    page.wait_for_selector("table tbody tr")
    out["title"] = page.title()
    headings = {"submit": "Submit a run", "sessions": "Sessions", "comparisons": "Comparisons",
                "providers": "Providers", "runs": "Runs"}
    for name, heading in headings.items():
        page.click(f"nav a[data-page={name}]")
        # The page before stays until this one has rendered.
        page.locator("main h1", has_text=heading).wait_for(timeout=WAIT)
        out.setdefault("headings", []).append(page.text_content("main h1"))
    page.goto(base + "/#/providers")
    # Only the hash changes: the runs page (a table too) stays until this one renders.
    page.locator("main h1", has_text="Providers").wait_for(timeout=WAIT)
    page.wait_for_selector("main table tr td")
    out["provider_rows"] = page.locator("main table tr").count() - 1


def submit(page, out):
    page.goto(base + "/#/submit")
    page.wait_for_selector("#prompt")
    page.fill("#prompt", "How many words are in the context?")
    if arg == "file":
        # A context file is uploaded (POST /v1/contexts) and the run names it by id.
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rlmd-console-{os.getpid()}.txt")
        with open(path, "w") as handle:
            handle.write("one two three four five")
        page.set_input_files("#context-file", path)
    else:
        page.fill("#context", "one two three four")
    page.click("#submit-run")
    page.wait_for_url("**/#/runs/*", timeout=WAIT)
    out["run_id"] = page.url.split("#/runs/")[1]
    page.wait_for_selector("#answer", timeout=WAIT)
    out["answer"] = page.text_content("#answer")
    out["status"] = page.text_content(".facts .status")
    out["code"] = page.locator("pre.code").first.text_content()


def tree(page, out):
    page.goto(f"{base}/#/runs/{arg}")
    page.wait_for_selector(".tree-node.depth-1 pre.code", timeout=WAIT)
    out["child_code"] = page.locator(".tree-node.depth-1 pre.code").first.text_content()
    out["root_code"] = page.locator(".tree-node.depth-0 > details pre.code").first.text_content()
    page.wait_for_selector("#answer", timeout=WAIT)
    out["answer"] = page.text_content("#answer")
    out["timeline_bars"] = page.locator(".timeline .bar").count()
    page.locator("summary", has_text="Messages sent").first.click()
    page.wait_for_selector(".message pre", timeout=WAIT)
    out["first_messages"] = page.locator(".message b").all_text_contents()
    out["sent_prompt"] = page.locator(".message pre").nth(1).text_content()
    # For the README: RLMD_SCREENSHOT=docs/console-run.png (and a phone's view beside it).
    if os.environ.get("RLMD_SCREENSHOT"):
        path = os.environ["RLMD_SCREENSHOT"]
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=path, full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=path.replace(".png", "-phone.png"))


def layout(page, out):
    """A run with a huge prompt and many children: nothing may widen the page."""
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/#/runs/{arg}")
        page.wait_for_selector(".tree-node", timeout=WAIT)
        page.wait_for_selector("#answer", timeout=WAIT)
        out[f"overflow_{width}"] = page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth")
    out["heading_chars"] = len(page.text_content("main h1"))
    out["folded_children"] = page.locator("summary", has_text="child runs").all_text_contents()
    page.goto(base + "/#/runs")
    page.wait_for_selector("table tbody tr td a", timeout=WAIT)
    out["list_overflow"] = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def cancel(page, out):
    page.goto(f"{base}/#/runs/{arg}")
    page.wait_for_selector("#cancel-run:not([disabled])", timeout=WAIT)
    page.click("#cancel-run")
    page.wait_for_selector(".facts .status.cancelled", timeout=WAIT)
    out["status"] = page.text_content(".facts .status")


def comparison(page, out):
    page.goto(f"{base}/#/comparisons/{arg}")
    page.wait_for_selector("#comparison .card .tag", timeout=WAIT)
    cards = page.locator("#comparison .card")
    out["targets"] = [cards.nth(i).locator("h2").text_content() for i in range(cards.count())]
    out["answers"] = [cards.nth(i).locator(".answer").text_content() for i in range(cards.count())]
    out["tags"] = page.locator("#comparison .tag").all_text_contents()


def key(page, out):
    page.goto(base + "/")
    page.wait_for_selector("#key-dialog[open]", timeout=WAIT)
    page.fill("#key-input", arg)
    page.click("#key-dialog button[value=save]")
    page.wait_for_selector("table tbody tr td a", timeout=WAIT)
    out["runs"] = page.locator("table tbody tr").count()
    out["prompts"] = page.locator("table tbody td.preview").all_text_contents()


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page()
    out = {"console_errors": [], "page_errors": []}
    # A 401 the console handles by asking for a key is logged by the browser as a failed
    # resource load; it is not an error of the console's.
    page.on("console", lambda m: m.type == "error" and "401" not in m.text and out["console_errors"].append(m.text))
    page.on("pageerror", lambda e: out["page_errors"].append(str(e)))
    {"loads": loads, "submit": submit, "tree": tree, "cancel": cancel, "layout": layout,
     "comparison": comparison, "key": key}[case](page, out)
    browser.close()
print(json.dumps(out))
