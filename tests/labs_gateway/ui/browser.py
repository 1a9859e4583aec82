"""Driving Debian's chromium with Playwright for the console tests (Playwright cannot download its
own browsers on these machines). Locally a missing browser skips the tests with the reason; in CI
(CI=true) it fails them, so the console is never silently untested."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL_HINT = "apt-get install -y --no-install-recommends chromium (make test does it when run as root)"


def chromium_path() -> str | None:
    explicit = os.environ.get("LABS_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def launch_browser(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        unavailable(f"no chromium on this machine; {INSTALL_HINT}")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)


@dataclass
class PageErrors:
    """What the page reported that a user would never see: script errors and CSP violations.
    Failed HTTP statuses are expected in some tests (401s), so "Failed to load resource" is not kept."""

    messages: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.messages.append(f"console.{message.type}: {message.text}")
