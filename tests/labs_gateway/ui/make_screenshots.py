"""Regenerate docs/console-chat.png and docs/console-usage.png from a live core on SmolLM2-135M
(the default model package) and a keyed gateway, with real traffic from three keys for a few
minutes. Not a test: `python -m tests.labs_gateway.ui.make_screenshots` (about 8 minutes on CPU).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from labs_gateway import create_app  # noqa: E402
from tests.labs_gateway.support import GatewayThread, gateway_settings  # noqa: E402
from tests.labs_gateway.ui.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.support import SMOLLM2, CoreThread, core_settings  # noqa: E402

DOCS = Path(__file__).resolve().parents[3] / "docs"
MODEL = "smollm2-135m-instruct"
KEYS = {"sales": "sk-sales-demo", "accounting": "sk-accounting-demo", "support-bot": "sk-support-demo"}
ADMIN = "sk-admin-demo"
TRAFFIC_S = float(os.environ.get("TRAFFIC_S", 360))
# (pause between requests in s, max_tokens, prompts) per key
PLAN = {
    "sales": (8, 90, ["Write a two-sentence follow-up email after a product demo.",
                      "Suggest a subject line for our spring offer."]),
    "accounting": (15, 160, ["Explain the difference between gross and net margin.",
                             "What is an accrual? Keep it short."]),
    "support-bot": (4, 40, ["Say thank you to a customer for their patience.", "Greet a customer politely."]),
}


def traffic(url: str, name: str, until: float) -> None:
    pause, max_tokens, prompts = PLAN[name]
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEYS[name]}"}, timeout=120) as http:
        while time.monotonic() < until:
            http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": max_tokens,
                                                    "messages": [{"role": "user", "content": random.choice(prompts)}]})
            time.sleep(pause * random.uniform(0.6, 1.4))


def chat_screenshot(browser, url: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/#chat")
    page.click("#key-button")
    page.fill("#api-key", KEYS["sales"])
    page.press("#api-key", "Enter")
    page.wait_for_function("() => document.querySelector('#model').value !== ''")

    def ask(text: str, max_tokens: int) -> None:
        page.fill("#max-tokens", str(max_tokens))
        page.dispatch_event("#max-tokens", "change")
        page.fill("#prompt", text)
        page.press("#prompt", "Enter")
        page.wait_for_selector("#send:not([hidden])", timeout=300_000)

    page.click("#toggle-settings")
    page.fill("#temperature", "0.3")
    page.dispatch_event("#temperature", "change")
    for earlier in ("Summarise our refund policy in one line.", "Translate 'thank you for your order' into French."):
        page.click("#new-chat")
        ask(earlier, 40)
    page.click("#new-chat")
    ask("Draft a short, friendly reply to a customer asking when their order will arrive.", 120)
    ask("Write a Python function that adds 20% VAT to a net price.", 200)
    page.click("#toggle-settings")
    page.mouse.move(640, 700)  # no hover or focus ring in the picture
    page.evaluate("() => document.activeElement.blur()")
    page.wait_for_timeout(300)
    page.screenshot(path=str(DOCS / "console-chat.png"))
    page.close()


def usage_screenshot(browser, url: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1010})
    page.goto(f"{url}/#usage")
    page.fill("#admin-key", ADMIN)
    page.press("#admin-key", "Enter")
    page.select_option("#usage-range", "15")
    page.wait_for_selector("#usage-table tbody tr[data-key]")
    page.evaluate("() => document.activeElement.blur()")
    page.wait_for_timeout(5500)  # one auto-refresh, so the live figures are current
    page.screenshot(path=str(DOCS / "console-usage.png"))
    page.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    settings = core_settings(SMOLLM2, model={"served_name": MODEL})
    with CoreThread(settings) as core:
        gw_settings = gateway_settings([core.address], api_keys=tuple(f"{k}:{v}" for k, v in KEYS.items()),
                                       admin_key=ADMIN, rate_limit_rpm=0)
        with GatewayThread(create_app(gw_settings)) as gw, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            chat_screenshot(browser, gw.url)
            until = time.monotonic() + TRAFFIC_S
            workers = [threading.Thread(target=traffic, args=(gw.url, name, until), daemon=True) for name in KEYS]
            for worker in workers:
                worker.start()
            time.sleep(TRAFFIC_S - 20)
            usage_screenshot(browser, gw.url)
            for worker in workers:
                worker.join()
            browser.close()
    print("wrote", DOCS / "console-chat.png", DOCS / "console-usage.png")


if __name__ == "__main__":
    main()
