"""Pages as a person sees them: Debian's headless Chromium, driven by Playwright (no browser is downloaded).

Without /usr/bin/chromium (or Playwright) a browser test skips with the
reason, except under CI (env var CI set), where it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}


def require_chromium() -> None:
    """Skip the test (fail it under CI) when Chromium or Playwright is missing."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (install Debian's chromium: make browser)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as error:
            reason = f"playwright is not installed ({error})"
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI is set, so the browser test must run: {reason}")
    if reason:
        pytest.skip(reason)


def render(page_path: Path, screenshot: Path | None = None) -> dict:
    """Open a page: its console errors, requests, images, every data-key's text, changed rows, text and width."""
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "images => images.map(image => [image.complete, image.naturalWidth, image.naturalHeight])")
            keyed = page.eval_on_selector_all(
                "[data-key]", "elements => elements.map(element => [element.dataset.key, element.innerText.trim()])")
            changed = page.eval_on_selector_all("tr.changed", "rows => rows.length")
            text = page.inner_text("body")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"errors": errors, "requests": requests, "images": images, "keyed": dict(keyed), "changed": changed,
            "text": text, "scroll_width": scroll_width}
