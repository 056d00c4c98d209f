"""The console's pages in a real headless Chromium: sign in, filter, open an event, replay a dead
one and see it delivered, all from the keyboard and plain clicks.

Driven with Selenium through the system's chromedriver (Debian's ``chromium-driver`` matches its
``chromium`` exactly, and Selenium is a small pure-Python client that downloads nothing when given
the driver's path). Skips, saying why, when either is missing. Set
``CALLBACKS_CONSOLE_SCREENSHOTS=DIR`` to keep the pages' screenshots (the README's come from here).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.console_support import (
    ADMIN_TOKEN,
    READ_ONLY_TOKEN,
    STREAM_KEY,
    Console,
    seed,
    start_console,
)
from tests.support import wait_for

pytestmark = pytest.mark.slow

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> tuple[str, str] | str:
    """The browser and driver binaries, or why there are none."""
    browser = next((found for name in _BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(
            name
            for name, found in (("chromium", browser), ("chromedriver", driver))
            if found is None
        )
        return f"no {missing} on PATH (Debian: apt-get install chromium chromium-driver)"
    return browser, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("the browser tests need selenium (pip install -e '.[test]')")
    found = _chromium()
    if isinstance(found, str):
        pytest.skip(f"the browser tests need a browser: {found}")
    browser, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers run as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--window-size=1366,900",  # a laptop screen
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(chromedriver), options=options)
    chrome.implicitly_wait(5)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    running = start_console(tmp_path_factory.mktemp("console"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def ids(console: Console) -> dict[str, list[str]]:
    return seed(console)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("CALLBACKS_CONSOLE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sign_in(driver: Any, console: Console, token: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.delete_all_cookies()
    driver.get(console.url + "/")
    assert "/login" in driver.current_url  # not signed in: sent to the form
    field = driver.find_element(By.ID, "token")
    assert driver.switch_to.active_element == field  # the form starts where the typing goes
    field.send_keys(token, Keys.ENTER)
    assert wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "table.events"), timeout=20)


def _follow(driver: Any, element: Any) -> None:
    """Click what leads to another page and wait until the browser shows it: a click returns
    before the navigation ends, and the old page's elements would still be found."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _shot(driver: Any, shots: Path, name: str) -> None:
    """The whole page (up to 1600 px tall) at the laptop window's width, through Chromium's own
    full-page capture."""
    import base64

    content = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": 1366, "height": min(content["height"], 1600), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip}
    )
    (shots / name).write_bytes(base64.b64decode(shot["data"]))


def test_sign_in_filter_open_and_replay_a_dead_event(
    driver: Any, console: Console, ids: dict[str, list[str]], shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _sign_in(driver, console, ADMIN_TOKEN)
    rows = driver.find_elements(By.CSS_SELECTOR, "table.events tbody tr")
    assert len(rows) == sum(len(v) for v in ids.values())
    _shot(driver, shots, "console-inbox.png")

    Select(driver.find_element(By.NAME, "status")).select_by_visible_text("dead")
    _follow(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    assert "status=dead" in driver.current_url
    links = driver.find_elements(By.CSS_SELECTOR, "table.events tbody a")
    [dead] = ids["dead"]
    assert [a.get_attribute("href").rsplit("/", 1)[1] for a in links] == [dead]

    _follow(driver, links[0])
    assert driver.find_element(By.ID, "event-status").text == "dead"
    page = driver.page_source
    assert "told to fail by the test" in page  # the handler's error, on its attempt row
    assert "console_handlers.deliver" in page
    _shot(driver, shots, "console-event.png")

    _follow(driver, driver.find_element(By.LINK_TEXT, "Replay…"))
    confirm = driver.find_element(By.ID, "confirm-replay")
    assert driver.switch_to.active_element == confirm
    _shot(driver, shots, "console-replay.png")
    _follow(driver, confirm)
    assert "Re-queued" in driver.find_element(By.CSS_SELECTOR, ".notice").text

    def delivered() -> bool:
        driver.refresh()
        return bool(driver.find_element(By.ID, "event-status").text == "delivered")

    assert wait_for(delivered, timeout=20)


def test_an_event_page_masks_the_stream_key(
    driver: Any, console: Console, ids: dict[str, list[str]]
) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(driver, console, READ_ONLY_TOKEN)
    driver.get(f"{console.url}/events/{ids['ms-live'][0]}")
    body = driver.find_element(By.CSS_SELECTOR, "pre.body").text
    assert "stream_key" in body
    assert "***" in body
    assert STREAM_KEY not in driver.page_source
    assert not driver.find_elements(By.LINK_TEXT, "Replay…")  # read-only: no action offered


def test_keys_and_live_pages(
    driver: Any, console: Console, ids: dict[str, list[str]], shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(driver, console, ADMIN_TOKEN)
    _follow(driver, driver.find_element(By.LINK_TEXT, "Keys"))
    page = driver.page_source
    for secret in console.setup.keys.values():
        assert secret not in page
    assert "primary" in page
    _shot(driver, shots, "console-keys.png")

    _follow(driver, driver.find_element(By.LINK_TEXT, "Live"))

    def filled() -> bool:
        row = driver.find_element(By.CSS_SELECTOR, '#live tr[data-route="ms-video"]')
        return bool(row.find_elements(By.TAG_NAME, "td")[1].text == "3")

    assert wait_for(filled, timeout=10)
    wait_for(
        lambda: (
            driver.find_element(By.CSS_SELECTOR, '#live tr[data-route="st"] td:nth-child(6)').text
            != "-"
        ),
        timeout=6,
    )
    _shot(driver, shots, "console-live.png")


def test_the_pages_work_from_the_keyboard(driver: Any, console: Console) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _sign_in(driver, console, ADMIN_TOKEN)
    driver.get(console.url + "/keys")  # a fresh page: focus starts at the top
    reached = []
    for _ in range(4):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        active = driver.switch_to.active_element
        reached.append(active.text)
        outline = active.value_of_css_property("outline-style")
        assert outline not in ("", "none"), f"no focus style on {active.text!r}"
    assert reached[:4] == ["Skip to content", "Inbox", "Keys", "Live"]
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    assert wait_for(lambda: driver.current_url.endswith("/live"), timeout=20)
