"""A real browser on the page: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven through
WebDriver by Selenium) opens ``cf-ref full serve``'s page on the tiny model, starts a stream, checks that frames
arrive (the canvas changes), switches the prompt while it plays, and saves a screenshot.

Skips, saying why, when Selenium, Chromium or its driver is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver (apt-get install chromium "
    f"chromium-driver; found chromium={CHROMIUM}, chromedriver={DRIVER})",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,1000",
]


def wait_for(condition, timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    # both paths given: Selenium Manager (which would download drivers) is not used
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def canvas_pixels(driver) -> str:
    return driver.execute_script("return document.getElementById('screen').toDataURL('image/png');")


def test_page_streams_frames_and_switches_prompt(serve_factory, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with serve_factory() as (address, app):
        browser.get(f"http://{address}/")
        start = browser.find_element(By.ID, "start")
        wait_for(lambda: start.is_enabled(), what="the page's hello from the server")
        blank = canvas_pixels(browser)
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        start.click()  # an empty prompt: the server says why, the page can start again
        status = browser.find_element(By.ID, "status")
        wait_for(lambda: "the prompt is empty" in status.text, what="the empty-prompt error")
        wait_for(lambda: start.is_enabled(), what="Start enabled again")
        prompt.send_keys("a red ball bouncing")
        Select(browser.find_element(By.ID, "steps")).select_by_visible_text("1")
        start.click()
        wait_for(lambda: browser.execute_script("return window.cfStats.drawn") >= 3, what="frames drawn")
        first = canvas_pixels(browser)
        assert first != blank
        wait_for(lambda: canvas_pixels(browser) != first, what="the canvas to change")
        assert browser.find_element(By.ID, "lat-start").text.endswith("ms")
        prompt.clear()
        prompt.send_keys("a blue cube spinning")
        browser.find_element(By.ID, "switch").click()
        wait_for(lambda: browser.find_element(By.ID, "lat-switch").text.endswith("ms"), what="the switched prompt")
        assert browser.execute_script("return window.cfStats.promptIndex") >= 1
        drawn = browser.execute_script("return window.cfStats.drawn")
        wait_for(lambda: browser.execute_script("return window.cfStats.drawn") > drawn + 4, what="more frames")
        shot = tmp_path / "serve.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
        if os.environ.get("CF_REF_SCREENSHOT"):
            shutil.copy(shot, os.environ["CF_REF_SCREENSHOT"])
        browser.find_element(By.ID, "stop").click()
        wait_for(lambda: "stopped" in browser.find_element(By.ID, "status").text, what="the stopped status")
        wait_for(lambda: not app.state.slot.busy, what="the model to be released")
