"""Headless Chromium for the page tests (the HTML report, the rating page), through Selenium and
Debian's chromedriver. `chromium()` skips the calling test with the reason when the browser or its
driver is missing (install: `make system`, i.e. apt-get install chromium chromium-driver)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile

import pytest

# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses; as root it needs --no-sandbox.
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1600",
)


def browser_paths() -> tuple[str, str] | None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (exe, driver) if exe and driver else None


@contextlib.contextmanager
def chromium():
    """A Selenium WebDriver on headless Chromium with browser-console logging on; quits at exit."""
    paths = browser_paths()
    if paths is None:
        pytest.skip("headless Chromium tests need chromium and chromedriver (make system)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, driver_path = paths
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for flag in FLAGS:
        opts.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        opts.add_argument(f"--user-data-dir={profile}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=opts)
        try:
            driver.set_page_load_timeout(60)
            yield driver
        finally:
            driver.quit()


def console_errors(driver) -> list[str]:
    """Browser-console messages of level SEVERE since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
