"""The console in a real browser (Debian's chromium via Playwright) against live gateways: the tiny
core for chat, Stop, keys and usage; the scripted fake core for reasoning, finance and failures.
Every page fails its test on a script error or a CSP violation (see conftest.page)."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.labs_gateway.ui.conftest import ADMIN, ALICE

pytestmark = pytest.mark.slow

LONG = 900  # tokens: ~10 s of the tiny model on CPU, far longer than any Stop test waits
JS = {"timeout": 20_000}


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def open_chat(page, url: str, model: str) -> None:
    page.goto(f"{url}/#chat")
    expect(page.locator("#model")).to_have_value(model)


def settings(page, max_tokens: int | None = None, temperature: float | None = None) -> None:
    if page.locator("#settings").is_hidden():
        page.click("#toggle-settings")
    if max_tokens is not None:
        page.fill("#max-tokens", str(max_tokens))
    if temperature is not None:
        page.fill("#temperature", str(temperature))


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def last_reply(page):
    return page.locator(".msg.assistant").last


def wait_reply_done(page) -> None:
    expect(page.locator("#send")).to_be_visible(timeout=60_000)
    expect(last_reply(page).locator(".msg-stats")).not_to_contain_text("Generating")


def engine_figures(url: str, admin: str | None = None) -> tuple[int, int]:
    """(running on the core's engines, in-flight streams in the gateway) from /admin/stats."""
    headers = {"authorization": f"Bearer {admin}"} if admin else {}
    stats = httpx.get(f"{url}/admin/stats", headers=headers, timeout=10).json()
    running = sum(e["running"] for core in stats["cores"] for e in core.get("engines", []))
    return running, stats["gateway"]["inflight_streams"]


def wait_figures(url: str, wanted: tuple[int, int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (got := engine_figures(url)) != wanted:
        assert time.monotonic() < deadline, f"/admin/stats says (running, inflight) = {got}, expected {wanted}"
        time.sleep(0.05)


def stored_conversations(page) -> list[dict]:
    return json.loads(page.evaluate("() => localStorage.getItem('labs.conversations.v1') || '[]'"))


# ---------------------------------------------------------------- chat against the tiny core

def test_chat_streams_an_answer_and_keeps_the_conversation(page, gateway):
    open_chat(page, gateway.url, "tiny")
    settings(page, max_tokens=24, temperature=1)
    send(page, "Hello there")
    expect(page.locator("#prompt")).to_have_value("")  # Enter sent it
    expect(page.locator(".msg.user .bubble")).to_have_text("Hello there")
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).not_to_be_empty()
    stats = reply.locator(".msg-stats").inner_text()
    assert re.search(r"TTFT \d+", stats) and re.search(r"\btok/s\b", stats), stats
    tokens = int(re.search(r"(\d+) tokens", stats).group(1))
    assert 1 <= tokens <= 24 and "≈" not in stats  # exact count from stream_options.include_usage

    saved = stored_conversations(page)
    assert len(saved) == 1 and [m["role"] for m in saved[0]["messages"]] == ["user", "assistant"]
    assert saved[0]["messages"][1]["content"].strip()
    assert saved[0]["messages"][1]["usage"]["completion_tokens"] == tokens

    page.reload()  # the conversation survives in localStorage
    expect(page.locator("#conversation-list button")).to_have_count(1)
    expect(page.locator("#conversation-list .t")).to_have_text("Hello there")
    expect(last_reply(page).locator(".msg-body")).not_to_be_empty()


def test_stop_aborts_the_stream_and_frees_the_slot(page, gateway):
    open_chat(page, gateway.url, "tiny")
    settings(page, max_tokens=LONG)
    send(page, "Tell me a long story")
    body = last_reply(page).locator(".msg-body.streaming")
    expect(body).to_have_text(re.compile(r"\S{3}"))  # the answer appears while it streams
    expect(page.locator("#stop")).to_be_visible()
    assert engine_figures(gateway.url) == (1, 1)
    page.click("#stop")
    wait_reply_done(page)
    wait_figures(gateway.url, (0, 0))  # the gateway cancelled the call; the core freed the slot
    reply = last_reply(page)
    expect(reply.locator(".badge.stopped")).to_be_visible()
    expect(reply.locator(".msg-stats")).to_contain_text("stopped by you")
    counted = int(re.search(r"≈(\d+) tokens", reply.locator(".msg-stats").inner_text()).group(1))
    assert 1 <= counted < LONG
    assert stored_conversations(page)[0]["messages"][1]["stopped"] is True


def test_escape_stops_too(page, gateway):
    open_chat(page, gateway.url, "tiny")
    settings(page, max_tokens=LONG)
    send(page, "Another long one")
    expect(last_reply(page).locator(".msg-body.streaming")).to_have_text(re.compile(r"\S"))
    page.keyboard.press("Escape")
    wait_reply_done(page)
    wait_figures(gateway.url, (0, 0))
    expect(last_reply(page).locator(".badge.stopped")).to_be_visible()


def test_shift_enter_makes_a_new_line(page, gateway):
    open_chat(page, gateway.url, "tiny")
    page.click("#prompt")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(page.locator("#prompt")).to_have_value("line one\nline two")
    expect(page.locator(".msg")).to_have_count(0)


# ---------------------------------------------------------------- keys and usage

def set_api_key(page, key: str) -> None:
    page.click("#key-button")
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")
    expect(page.locator("#key-panel")).to_be_hidden()


def test_missing_and_bad_keys_show_the_gateways_message(page, keyed_gateway):
    page.goto(f"{keyed_gateway.url}/#chat")
    notice = page.locator("#chat-notice .alert.error")
    expect(notice).to_contain_text("Missing API key")
    expect(notice).to_contain_text("HTTP 401")

    set_api_key(page, "sk-wrong")
    expect(notice).to_contain_text("Incorrect API key provided")
    assert page.evaluate("() => sessionStorage.getItem('labs.apiKey')") == "sk-wrong"
    assert page.evaluate("() => localStorage.getItem('labs.apiKey')") is None

    set_api_key(page, ALICE)
    expect(page.locator("#model")).to_have_value("tiny")
    expect(notice).to_have_count(0)
    # The key is revoked while the page is open: the chat request itself fails, readably.
    page.evaluate("() => sessionStorage.setItem('labs.apiKey', 'sk-revoked')")
    send(page, "hi")
    wait_reply_done(page)
    error = last_reply(page).locator(".alert.error")
    expect(error).to_contain_text("Incorrect API key provided")
    expect(error).to_contain_text("invalid_api_key")


def usage_row(page, key: str) -> dict[str, int]:
    row = page.locator(f"#usage-table tbody tr[data-key='{key}']")
    if row.count() == 0:
        return {"requests": 0, "prompt": 0, "completion": 0}
    cells = [int(re.sub(r"\D", "", c) or 0) for c in row.locator("td").all_inner_texts()[1:6]]
    return {"requests": cells[0], "prompt": cells[2], "completion": cells[3]}


def test_usage_counts_rise_after_a_chat(page, keyed_gateway):
    page.goto(f"{keyed_gateway.url}/#usage")
    expect(page.locator("#usage-error")).to_contain_text("admin endpoints need the admin key")
    page.fill("#admin-key", ADMIN)
    page.press("#admin-key", "Enter")
    expect(page.locator("#usage-error")).to_be_empty()
    expect(page.locator("#usage-updated")).to_contain_text("updated")
    expect(page.locator("#stat-inflight")).to_have_text("0")
    before = usage_row(page, "alice")

    page.click("a[href='#chat']")
    set_api_key(page, ALICE)
    expect(page.locator("#model")).to_have_value("tiny")
    settings(page, max_tokens=12)
    send(page, "Count me")
    wait_reply_done(page)
    reply = last_reply(page).locator(".msg-stats").inner_text()
    tokens = int(re.search(r"(\d+) tokens", reply).group(1))
    prompt = int(re.search(r"prompt (\d+)", reply).group(1))

    page.click("a[href='#usage']")
    page.click("#usage-refresh")
    deadline = time.monotonic() + 10
    while (after := usage_row(page, "alice"))["completion"] == before["completion"]:
        assert time.monotonic() < deadline, "the usage table did not change after a chat"
        page.wait_for_timeout(100)
    assert after["completion"] - before["completion"] == tokens
    assert after["prompt"] - before["prompt"] == prompt
    assert after["requests"] - before["requests"] >= 2  # /v1/models and the chat
    assert page.locator("#usage-chart svg rect.bar").count() >= 1
    assert "alice" in page.locator("#chart-legend").inner_text()
    expect(page.locator("#engine-table tbody")).to_contain_text("tiny")


def test_status_page_lists_cores_and_models(page, gateway):
    page.goto(f"{gateway.url}/#status")
    expect(page.locator("#ready-pill")).to_have_text("Ready")
    expect(page.locator("#status-summary")).to_have_text("1 of 1 core ready")
    row = page.locator("#models-table tr[data-model='tiny']")
    expect(row).to_contain_text("chat")
    expect(row).to_contain_text("cpu")
    expect(row).to_contain_text("float32")
    expect(row).to_contain_text("1,024")
    expect(page.locator("#health")).to_have_class(re.compile(r"\bok\b"))


@pytest.fixture()
def admin_gateway(fake_core):
    from labs_gateway import create_app
    from tests.labs_gateway.support import GatewayThread, gateway_settings

    with GatewayThread(create_app(gateway_settings([fake_core.address], admin_key=ADMIN))) as gw:
        yield gw


def test_keys_page_creates_rotates_and_revokes(page, admin_gateway):
    url = admin_gateway.url
    chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}

    def status(secret: str) -> int:
        return httpx.post(f"{url}/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {secret}"},
                          timeout=10).status_code

    page.goto(f"{url}/#keys")
    page.fill("#keys-admin-key", ADMIN)
    page.press("#keys-admin-key", "Enter")
    expect(page.locator("#keys-table tbody")).to_contain_text("No keys yet")
    form = page.locator("#key-create")
    form.locator("[name=name]").fill("alice")
    form.locator("[name=owner]").fill("team-a")
    form.locator("[name=models]").fill("fake-chat")
    form.locator("[name=rpm]").fill("5")
    form.locator("[name=day_tokens]").fill("1000")
    form.locator("button[type=submit]").click()
    secret_box = page.locator("#key-secret code.secret")
    expect(secret_box).to_have_text(re.compile(r"^labs-"))
    secret = secret_box.inner_text()
    row = page.locator("#keys-table tr[data-key='alice']")
    expect(row).to_contain_text("team-a")
    expect(row).to_contain_text("5 rpm, 1,000 tok/day")
    expect(row).to_contain_text("active")
    assert secret not in page.locator("#keys-table").inner_text()
    assert status(secret) == 200

    row.get_by_role("button", name="Rotate").click()
    expect(secret_box).not_to_have_text(secret)
    rotated = secret_box.inner_text()
    assert rotated.startswith("labs-") and status(secret) == 401 and status(rotated) == 200

    revoke = row.get_by_role("button", name="Revoke")
    revoke.click()
    expect(row.get_by_role("button", name="Confirm revoke")).to_be_visible()
    row.get_by_role("button", name="Confirm revoke").click()
    expect(row).to_contain_text("revoked")
    assert status(rotated) == 401

    page.fill("#keys-admin-key", "wrong")
    page.press("#keys-admin-key", "Enter")
    expect(page.locator("#keys-error")).to_contain_text("admin key")
    page.click("a[href='#usage']")
    page.click("a[href='#keys']")
    expect(page.locator("#key-secret")).to_be_empty()  # shown once: gone after leaving the page


# ---------------------------------------------------------------- scripted answers (fake core)

def test_reasoning_is_shown_apart_and_collapses(page, scripted_gateway):
    open_chat(page, scripted_gateway.url, "fake-chat")
    page.select_option("#model", "fake-reasoning")
    settings(page)
    expect(page.locator("#thinking-field")).to_be_visible()
    send(page, "What is 2 + 2?")
    wait_reply_done(page)
    reply = last_reply(page)
    reasoning = reply.locator("details.reasoning")
    expect(reasoning).to_be_visible()
    assert reasoning.get_attribute("open") is None  # collapsed once the answer is there
    expect(reasoning.locator("summary")).to_have_text("Reasoning · 2 tokens")
    reasoning.locator("summary").click()
    expect(reasoning.locator(".reasoning-body")).to_have_text("Let me think.")
    expect(reply.locator(".msg-body")).to_have_text("Four.")


def test_tool_calls_are_rendered_in_the_reply(page, scripted_gateway):
    open_chat(page, scripted_gateway.url, "fake-chat")
    page.select_option("#model", "fake-tools")
    send(page, "What time is it?")
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).to_have_text("Checking.")
    card = reply.locator(".tool-call")
    expect(card.locator("code")).to_have_text("get_time")
    expect(card).to_contain_text("call_7")
    expect(card.locator("pre")).to_have_text('{\n  "zone": "UTC"\n}')


def test_finance_answer_shows_where_the_figure_came_from(page, scripted_gateway):
    open_chat(page, scripted_gateway.url, "fake-chat")
    page.select_option("#model", "fake-finance")
    send(page, "How much did we spend on software?")
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.locator(".badge.finance")).to_be_visible()
    card = reply.locator(".finance-card")
    expect(card).to_contain_text("category = Software")
    expect(card.locator("dt:has-text('Rows matched') + dd")).to_have_text("3")
    expect(card).to_contain_text("1,234.50 EUR")
    expect(card).to_contain_text("2025-12-31")
    card.locator("summary").click()
    expect(card.locator("table")).to_contain_text("JetBrains")


def test_failure_mid_stream_keeps_the_text_and_shows_the_error(page, scripted_gateway):
    open_chat(page, scripted_gateway.url, "fake-chat")
    page.select_option("#model", "fake-midstream")
    send(page, "go")
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).to_have_text("partial")
    expect(reply.locator(".alert.error")).to_contain_text("engine crashed")


def test_model_output_is_rendered_as_safe_markdown(page, scripted_gateway):
    page.on("dialog", lambda dialog: pytest.fail(f"a script from model output ran: {dialog.message}"))
    evil = ("**bold** <img src=x onerror=alert(1)> <script>alert(2)</script> [x](javascript:alert(3)) "
            "![tracker](http://example.com/t.png)\n\n```python\ndef f():\n    return 1\n```")
    conversation = {"id": "c1", "title": "", "created": 1, "updated": 2, "system": "", "messages": [
        {"role": "user", "content": "<b>hi</b>"},
        {"role": "assistant", "model": "fake-chat", "content": evil, "finish": "stop"}]}
    page.goto(f"{scripted_gateway.url}/#chat")
    page.evaluate("(items) => localStorage.setItem('labs.conversations.v1', JSON.stringify(items))", [conversation])
    page.reload()
    body = last_reply(page).locator(".msg-body")
    expect(body.locator("strong")).to_have_text("bold")
    assert body.locator("img, script").count() == 0
    expect(body).to_contain_text("<img src=x onerror=alert(1)>")  # shown as text
    for href in body.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert href is None or not href.lower().startswith("javascript"), href
    expect(body.locator("a[href='http://example.com/t.png']")).to_have_text("[tracker]")  # no image request
    expect(body.locator("pre code .token.keyword").first).to_have_text("def")
    expect(page.locator(".msg.user .bubble")).to_have_text("<b>hi</b>")


def test_rename_export_and_delete(page, scripted_gateway):
    open_chat(page, scripted_gateway.url, "fake-chat")
    send(page, "first question")
    wait_reply_done(page)
    expect(last_reply(page).locator(".msg-body")).to_have_text("alpha beta gamma")
    page.click("#rename-chat")
    page.fill("#conv-title-input", "Quarterly numbers")
    page.press("#conv-title-input", "Enter")
    expect(page.locator("#conv-title")).to_have_text("Quarterly numbers")
    expect(page.locator("#conversation-list .t")).to_have_text("Quarterly numbers")

    with page.expect_download() as download:
        page.click("#export-chat")
    assert download.value.suggested_filename == "labs-chat-quarterly-numbers.json"
    exported = json.loads(open(download.value.path()).read())
    assert exported["format"] == "labs.conversations"
    [conversation] = exported["conversations"]
    assert conversation["title"] == "Quarterly numbers"
    assert [m["content"] for m in conversation["messages"]] == ["first question", "alpha beta gamma"]

    page.click("#delete-chat")
    expect(page.locator("#delete-chat")).to_have_text("Confirm delete")
    page.click("#delete-chat")
    expect(page.locator("#conversation-list .empty")).to_be_visible()
    assert stored_conversations(page) == []


# ---------------------------------------------------------------- small screens

@pytest.mark.parametrize("view", ["chat", "usage", "keys", "status"])
def test_no_horizontal_scroll_at_360_px(browser, scripted_gateway, view, tmp_path):
    context = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        page = context.new_page()
        page.goto(f"{scripted_gateway.url}/#chat")
        long_answer = "A long line: " + "x" * 400 + "\n\n```\n" + "y" * 400 + "\n```\n\n| a | b | c | d | e |\n|---|---|---|---|---|\n" \
            + "| " + " | ".join(["wide-cell-content"] * 5) + " |"
        conversation = {"id": "c1", "title": "A conversation with a long title that must not widen the page",
                        "created": 1, "updated": 2, "system": "",
                        "messages": [{"role": "user", "content": "u" * 300},
                                     {"role": "assistant", "model": "fake-chat", "content": long_answer}]}
        page.evaluate("(items) => localStorage.setItem('labs.conversations.v1', JSON.stringify(items))", [conversation])
        page.goto(f"{scripted_gateway.url}/#{view}")
        page.reload()
        if view == "chat":
            expect(page.locator(".msg.assistant .code")).to_be_visible()
            page.click("#toggle-settings")
        elif view == "keys":
            expect(page.locator("#keys-table tbody")).to_contain_text("No keys yet")
            expect(page.locator("#toggle-sidebar")).to_be_hidden()
        else:
            ready = page.locator("#usage-updated") if view == "usage" else page.locator("#ready-pill")
            expect(ready).to_contain_text("updated" if view == "usage" else "Ready")
            expect(page.locator("#toggle-sidebar")).to_be_hidden()
        page.screenshot(path=str(tmp_path / f"{view}-360.png"), full_page=True)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 360, f"#{view} is {width} px wide at a 360 px viewport (see {tmp_path})"
        if view == "chat":  # the conversation list is a drawer on phones
            expect(page.locator("#sidebar")).not_to_be_in_viewport()
            page.click("#toggle-sidebar")
            expect(page.locator("#sidebar")).to_be_in_viewport()
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    finally:
        context.close()
