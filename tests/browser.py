"""A real browser for tests: the Debian package's headless Chromium, driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium
(`apt-get install chromium`; scripts/test installs it). Every console error
and uncaught exception of the page is collected, so a test can require none,
or only the failed requests it provoked. Screenshots are kept as artefacts in
test-artifacts/console/ at the repository's root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Page, expect, sync_playwright

from tests.processes import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
LAPTOP = {"width": 1366, "height": 768}
# How long `expect` waits for the page: it refreshes every second or so, slower on a busy machine
expect.set_options(timeout=20_000)
# What Chromium logs for a request answered with an error status (the page itself is fine)
FAILED_REQUEST = re.compile(
    r"^Failed to load resource: the server responded with a status of (\d+)"
)


@dataclass
class WatchedPage:
    """A page, and every error its console reported."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text} ({message.location.get('url')})")

    def crashed(self, error: Error) -> None:
        self.problems.append(f"uncaught: {error}")

    def errors_besides(self, statuses: Iterable[int] = ()) -> list[str]:
        """The errors, less the failed requests answered with one of `statuses`."""
        allowed = {str(status) for status in statuses}
        return [
            problem
            for problem in self.problems
            if not (
                (found := FAILED_REQUEST.match(problem.removeprefix("console: ")))
                and found[1] in allowed
            )
        ]


@contextmanager
def chromium_page(viewport: dict[str, int] | None = None) -> Iterator[WatchedPage]:
    """A fresh page in headless Chromium (a laptop screen by default), closed afterwards."""
    assert CHROMIUM.exists(), "the browser tests need /usr/bin/chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=viewport or LAPTOP)  # type: ignore[arg-type]
            page = context.new_page()
            watched = WatchedPage(page)
            page.on("console", watched.console)
            page.on("pageerror", watched.crashed)
            yield watched
        finally:
            browser.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save what the page shows as test-artifacts/console/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
