"""``chatroute report``: a self-contained page that renders in a real headless browser (Debian's
chromium, driven by chromedriver) with no console errors."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from chatroute import bootstrap
from chatroute.report import write_report
from chatroute.settings import Settings
from chatroute.stats import Window
from chatroute.tools.replay import replay
from tests.builders import Events, jsonl
from tests.integration.test_cli import chatroute
from tests.integration.test_stats import lifecycle_day, transfer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = "Debian's chromium and chromium-driver are needed (scripts/browser.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,1400"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(tmp_path: Path) -> Path:
    shop = Events("shop-1")
    shop.rule("all", "G")
    lifecycle_day(shop)
    shop.respondent("<b>eve</b>", ["G"], slots=3)  # a name that must not become markup
    shop.start("c9", page="g")
    transfer(shop, "c9", "<b>eve</b>", "a")
    settings = Settings(database_url=f"sqlite:///{tmp_path}/r.db")
    replay(settings, io.BytesIO(jsonl(shop.lines)).readlines(), io.StringIO())
    return write_report(bootstrap.build(settings), Window("shop-1"), tmp_path / "report")


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    assert "https://" not in text and "<b>eve</b>" not in text and "&lt;b&gt;eve" in text
    assert text.count("<svg") == 5  # answered, waits, transfers, satisfaction, commission


def test_it_renders_in_chromium_without_console_errors(
    browser: webdriver.Chrome, page: Path, tmp_path: Path
) -> None:
    browser.get(page.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title == "chatroute statistics: shop-1"
    charts = browser.find_elements(By.TAG_NAME, "svg")
    assert len(charts) == 5
    assert all(c.size["width"] > 300 and c.size["height"] > 20 for c in charts)
    # every bar and cell is drawn with its tooltip (matplotlib's paths, ids of chatroute.charts)
    bars = browser.find_elements(By.CSS_SELECTOR, "svg g[id^='tip-'] > path")
    assert sum(1 for b in bars if b.size["width"] > 0 and b.size["height"] > 0) > 10
    tips = browser.find_elements(By.CSS_SELECTOR, "svg g[id^='tip-'] > title")
    assert any(t.get_attribute("textContent") == "<b>eve</b> → a: 1" for t in tips)
    assert [h.text for h in browser.find_elements(By.TAG_NAME, "h2")] == [
        "Contacts per respondent",
        "Wait before first assignment",
        "Transfers between respondents",
        "Satisfaction per respondent (average score, ratings in brackets)",
        "Commission per respondent",
        "Groups",
    ]
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert browser.save_screenshot(str(tmp_path / "report.png"))


def test_the_command_writes_the_page(tmp_path: Path) -> None:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    shop.start("c1")
    (tmp_path / "events.jsonl").write_bytes(jsonl(shop.lines))
    assert chatroute("replay", "events.jsonl", cwd=tmp_path).returncode == 0
    made = chatroute("report", "--tenant", "shop-1", "--out", "out", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "<svg" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
