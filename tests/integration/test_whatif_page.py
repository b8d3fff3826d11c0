"""``chatroute whatif --html DIR``: the comparison as a self-contained page that renders in
headless Chromium (Debian's, driven by chromedriver) with no console errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from chatroute.cli import main
from tests.integration.test_report import browser  # noqa: F401  (the fixture)
from tests.integration.test_whatif import CHANGE, DAY

TENANTS = ["bank-7", "shop-1", "shop-2", "travel-4"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whatif") / "page"
    args = ["whatif", str(DAY), "--change", str(CHANGE), "--until", "2026-11-23T00:00:00Z"]
    assert main([*args, "--html", str(out)]) == 0
    return out / "index.html"


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "https://" not in text
    assert not re.findall(r"http://(?!www\.w3\.org/)", text)
    # per tenant: the waits, the groups, the respondents
    assert text.count("<svg") == 3 * len(TENANTS)


def test_it_renders_in_chromium_and_shows_both_runs(
    browser: webdriver.Chrome,  # noqa: F811
    page: Path,
    tmp_path: Path,
) -> None:
    browser.get(page.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title == "chatroute what-if"
    tenants = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert [t for t in tenants if t.startswith("Tenant ")] == [f"Tenant {t}" for t in TENANTS]
    charts = browser.find_elements(By.TAG_NAME, "svg")
    assert len(charts) == 3 * len(TENANTS)
    assert all(c.size["width"] > 300 and c.size["height"] > 40 for c in charts)
    tips = [
        t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "svg title")
    ]
    assert "fred, baseline: 0" in tips and "fred, change: 4" in tips
    assert "Smartphones: queued, baseline: 2" in tips and "Smartphones: queued, change: 0" in tips
    # shop-1's queue went away: its delta reads as an improvement
    better = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.better")]
    assert "-2" in better
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert browser.save_screenshot(str(tmp_path / "whatif.png"))
