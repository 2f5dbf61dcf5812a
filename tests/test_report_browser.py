"""The HTML report in a real browser: headless Chromium (Debian's, installed by `make browser`)
driven by Playwright. What a user sees: the cards, the counts, a failed check marked, a hostile
name shown as text with no dialog and no request leaving the page; readable without scripts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests import report_fleet
from tests.conftest import Run
from tests.report_fleet import HOSTILE, HOSTILE_LABEL

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    found = next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
    assert found, "Chromium is missing: 'make browser' installs Debian's chromium (make test runs it)"
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Root in a container has no user namespaces for Chromium's sandbox; the page is our own file.
        launched = playwright.chromium.launch(executable_path=chromium_path(), chromium_sandbox=False)
        yield launched
        launched.close()


@pytest.fixture
def report_file(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    report_fleet.build(repo, run, monkeypatch)
    result = run("report", "--out", "connections.html")
    assert result.code == 0, result.err
    return repo / "connections.html"


class Watched:
    """A page whose dialogs and outgoing requests are recorded (and requests refused)."""

    def __init__(self, browser: Browser, url: str, **context: Any) -> None:
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(**context)
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("dialog", self._dialog)
        self.url = url
        self.page.goto(url)

    def _route(self, route: Any) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


def visible_rows(page: Page) -> list[str]:
    return [page.locator("tbody tr[data-name]").nth(i).locator(".name").inner_text()
            for i in range(page.locator("tbody tr[data-name]").count())
            if page.locator("tbody tr[data-name]").nth(i).is_visible()]


def test_cards_counts_and_marks_as_a_user_sees_them(browser: Browser, report_file: Path) -> None:
    watched = Watched(browser, report_file.as_uri())
    page = watched.page
    cards = page.locator("article.card")
    assert [cards.nth(i).locator("h3").inner_text().split()[0] for i in range(cards.count())] == [
        "aws", "azure", "gcp"]
    assert "7 need attention" in cards.nth(0).inner_text() and "all healthy" in cards.nth(1).inner_text()
    tiles = {page.locator(".tile .l").nth(i).inner_text(): page.locator(".tile .n").nth(i).inner_text()
             for i in range(page.locator(".tile").count())}
    assert (tiles["Connections"], tiles["Need attention"], tiles["Drift"], tiles["Orphan"],
            tiles["Verification failed"], tiles["Keys over 90 days"]) == ("10", "7", "1", "1", "3", "1")
    assert page.locator("#problems").inner_text() == "Needs attention (7)"
    assert page.locator("#healthy").inner_text() == "Everything else (3)"

    # A failed verification is marked in words and in colour, on the row itself.
    broken = page.locator("tr[data-name='broken']")
    badge = broken.locator("td").nth(7).locator(".badge")
    assert badge.is_visible() and badge.inner_text() == "✗ failed"
    assert "key rejected by STS" in broken.inner_text()
    ok_badge = page.locator("tr[data-name='azure dev'] td").nth(7).locator(".badge")
    colour = badge.evaluate("e => getComputedStyle(e).color")
    assert colour != ok_badge.evaluate("e => getComputedStyle(e).color")
    assert "problem" in (broken.get_attribute("class") or "")

    # The exposed key is announced at the top, before anything else.
    alert = page.locator("[role=alert]")
    assert alert.is_visible() and "Exposed: 1 key" in alert.inner_text() and "Billing" in alert.inner_text()
    assert alert.bounding_box()["y"] < cards.nth(0).bounding_box()["y"]  # type: ignore[index]
    assert watched.dialogs == [] and watched.requests == []


def test_a_hostile_name_is_text_runs_nothing_and_loads_nothing(browser: Browser, report_file: Path) -> None:
    watched = Watched(browser, report_file.as_uri())
    page = watched.page
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # time for an onerror to fire, were there an image
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    row = page.locator("tr[data-name='<img src=x onerror=alert(1)>']")
    assert row.locator(".name").inner_text() == HOSTILE
    assert f"team={HOSTILE_LABEL}" in row.inner_text()
    assert page.get_by_text(HOSTILE, exact=True).count() >= 1
    # Filtering by the hostile text still treats it as text.
    page.locator("#q").fill("onerror")
    assert visible_rows(page) == [HOSTILE]
    assert watched.dialogs == [] and watched.requests == []


def test_filter_and_sort_with_scripts_on(browser: Browser, report_file: Path) -> None:
    page = Watched(browser, report_file.as_uri()).page
    assert page.locator("#controls").is_visible()
    assert page.locator("#shown").inner_text() == "10 of 10 shown"
    page.locator("#q").fill("billing")
    assert visible_rows(page) == ["Billing"]
    page.locator("#q").fill("")
    page.locator("#state").select_option("not-applied")
    assert sorted(visible_rows(page)) == ["Bad Region", "New One"]
    page.locator("#state").select_option("")
    page.locator("#problems-only").check()
    assert len(visible_rows(page)) == 7 and page.locator("#shown").inner_text() == "7 of 10 shown"
    page.locator("#problems-only").uncheck()
    page.locator("#problems + .table-wrap th[data-key=age] button").click()  # oldest keys last, then first
    page.locator("#problems + .table-wrap th[data-key=age] button").click()
    first = page.locator("#problems + .table-wrap tbody tr").first
    assert first.locator(".name").inner_text() == "Old Key"
    assert page.locator("#problems + .table-wrap th[data-key=age]").get_attribute("aria-sort") == "descending"


def test_readable_with_scripts_off_printable_and_dark(browser: Browser, report_file: Path) -> None:
    off = Watched(browser, report_file.as_uri(), java_script_enabled=False)
    page = off.page
    assert not page.locator("#controls").is_visible()  # nothing that would not work
    assert len(visible_rows(page)) == 10 and page.locator("article.card").count() == 3
    assert "✗ failed" in page.locator("tr[data-name='broken']").inner_text()
    assert off.requests == [] and off.dialogs == []

    page.emulate_media(media="print")
    assert page.locator("tbody tr[data-name]").first.is_visible()
    pdf = page.pdf()  # it prints
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000

    light = Watched(browser, report_file.as_uri(), color_scheme="light").page
    dark = Watched(browser, report_file.as_uri(), color_scheme="dark").page
    background = "getComputedStyle(document.body).backgroundColor"
    assert light.evaluate(background) == "rgb(246, 247, 249)"
    assert dark.evaluate(background) == "rgb(15, 18, 22)"
