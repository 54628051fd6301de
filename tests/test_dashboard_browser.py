"""The central's web dashboard in a real browser: headless Chromium via selenium.

`check_dashboard` takes the page's URL, so the same checks run against the fake
API of tests/webfake.py and against a real central started with ``--web``.
It waits (polling the DOM, with a deadline) for live data, checks that the
secondaries, a file and a download's progress are shown, that the progress
grows between polls, and saves screenshots at laptop (1366x768) and phone
(390x844) size under the test's tmp_path.

Selenium drives Debian's ``chromium`` through ``chromedriver``
(packages chromium and chromium-driver): a well-known API for waiting on the
DOM and taking screenshots, and nothing is downloaded at test time. A test
skips, with the reason, only when Chromium or its driver is missing or cannot
start here.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from redesdl.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
LAPTOP = (1366, 768)
PHONE = (390, 844)

#: What the page shows, read in one go from the DOM.
READ_PAGE = """
const texts = (selector) =>
  Array.from(document.querySelectorAll(selector), (node) => node.textContent);
const problem = document.getElementById("problem");
return {
  updates: Number(document.body.dataset.updates || 0),
  problem: problem.hidden ? null : problem.textContent,
  status: document.getElementById("status").textContent,
  secondaries: texts("#secondaries-table tbody th[scope=row]"),
  files: texts("#files-table tbody th[scope=row]"),
  filesNextDisabled: document.getElementById("files-next").disabled,
  active: Array.from(
    document.querySelectorAll("#active-table tbody tr[data-file]"),
    (row) => {
      const pct = row.querySelector(".pct");
      return {
        file: row.dataset.file,
        client: row.dataset.client,
        percent: pct && pct.dataset.percent ? Number(pct.dataset.percent) : null,
      };
    }),
  queued: texts("#queued-table tbody tr[data-file]").length,
  lines: document.querySelectorAll("#chart-rate polyline").length,
  queueLines: document.querySelectorAll("#chart-queue polyline").length,
  scripts: document.scripts.length,
  alerts: texts("#alerts li"),
  perVideo: texts("#per-file-table tbody th[scope=row]").length,
  pageWidth: document.documentElement.scrollWidth,
  viewWidth: document.documentElement.clientWidth,
};
"""


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 30.0,
    every: float = 0.25,
    show: Callable[[], Any] | None = None,
) -> Any:
    """Poll C{check} until it returns something true, or fail after C{timeout}.

    On failure the message carries C{show()}, such as what the page showed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    shown = show() if show is not None else None
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: {shown}")


def read_page(driver: Any) -> dict[str, Any]:
    return driver.execute_script(READ_PAGE)


def set_viewport(driver: Any, size: tuple[int, int], mobile: bool) -> None:
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def save_screenshot(driver: Any, path: Path, full_page: bool = False) -> Path:
    """The viewport, or with C{full_page} the whole page, as a PNG file."""
    if full_page:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        assert driver.save_screenshot(str(path)), path
    assert path.read_bytes().startswith(b"\x89PNG"), path
    return path


def next_update(driver: Any) -> dict[str, Any]:
    """Wait for the page's next complete refresh and return what it shows."""
    seen = read_page(driver)["updates"]
    return wait_for(
        "the next refresh",
        lambda: (page := read_page(driver))["updates"] > seen and page,
        timeout=15,
    )


def check_dashboard(
    driver: Any,
    url: str,
    shots: Path,
    *,
    secondaries: Sequence[str],
    file: str,
    downloading: str,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Load the dashboard at C{url} and check that it shows live data.

    C{secondaries} must all be listed, C{file} must be in the files table and
    C{downloading} must be an active download whose progress grows.
    Screenshots go to C{shots}; returns the last state read from the page.
    """
    set_viewport(driver, LAPTOP, mobile=False)
    driver.get(url)
    page = wait_for(
        f"secondaries {list(secondaries)} and file {file!r}",
        lambda: (
            (p := read_page(driver))["updates"] > 0
            and set(secondaries) <= set(p["secondaries"])
            and file in p["files"]
            and p
        ),
        timeout,
        show=lambda: read_page(driver),
    )
    assert page["problem"] is None, page["problem"]
    assert page["status"].startswith("Live"), page["status"]
    # Names are data, never markup: the page still has its one script.
    assert page["scripts"] == 1, page["scripts"]

    def progress() -> float | None:
        for row in read_page(driver)["active"]:
            if row["file"] == downloading and row["percent"] is not None:
                return row["percent"]
        return None

    first = wait_for(f"progress of {downloading!r}", progress, timeout)
    later = wait_for(
        f"progress of {downloading!r} to grow beyond {first} %",
        lambda: (p := progress()) is not None and p > first and p,
        timeout,
    )
    assert 0 <= first < later <= 100
    page = next_update(driver)
    assert page["lines"] >= 1 and page["queueLines"] >= 1, page
    assert page["pageWidth"] <= page["viewWidth"] + 1, "the page scrolls sideways"
    save_screenshot(driver, shots / "dashboard-1366x768.png")
    save_screenshot(driver, shots / "dashboard-1366-full.png", full_page=True)

    set_viewport(driver, PHONE, mobile=True)
    page = next_update(driver)
    # Wide tables scroll inside their own box; the page itself does not.
    assert page["pageWidth"] <= page["viewWidth"] + 1, (
        f"page is {page['pageWidth']} px wide on a {page['viewWidth']} px phone"
    )
    save_screenshot(driver, shots / "dashboard-390x844.png")
    save_screenshot(driver, shots / "dashboard-390-full.png", full_page=True)
    set_viewport(driver, LAPTOP, mobile=False)
    return page


# --- Chromium ---------------------------------------------------------------


def _kill_group(process: subprocess.Popen[Any] | None) -> None:
    """Kill chromedriver's session (itself and the Chromium it started)."""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except (subprocess.TimeoutExpired, ChildProcessError):
        pass


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium under chromedriver, stopped (and killed) afterwards."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(
            "Chromium or chromedriver is not installed "
            "(apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to sandbox root
    service = Service(
        executable_path=chromedriver,
        log_output=str(tmp_path / "chromedriver.log"),
        # Its own session, so chromedriver and every Chromium process it
        # starts can be killed together even if quit() fails.
        popen_kw={"start_new_session": True},
    )
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        _kill_group(service.process)
        reason = (error.msg or str(error)).strip().splitlines()[0]
        pytest.skip(f"Chromium cannot start here: {reason}")
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        process = service.process
        try:
            driver.quit()
        finally:
            _kill_group(process)


# --- against the fake API ---------------------------------------------------


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[str]:
    """tests/webfake.py in its own process; yields its base URL."""
    root = Path(__file__).resolve().parent.parent
    with open(tmp_path / "webfake.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.webfake", "--port", "0", "--token", TOKEN],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, f"webfake did not start: {line!r}, see {tmp_path}/webfake.log"
        yield found.group(0)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


TOKEN = "Zm9v/YmFy+cXV4="  # as base64 would make it: / + = in a URL fragment


def test_dashboard_against_the_fake_api(
    fake_api: str, browser: Any, tmp_path: Path
) -> None:
    # Without its token the page says what to do instead of showing nothing.
    set_viewport(browser, LAPTOP, mobile=False)
    browser.get(fake_api)
    problem = wait_for(
        "the token message", lambda: read_page(browser)["problem"], timeout=20
    )
    assert "needs its token" in problem and "operator" in problem

    from urllib.parse import quote

    page = check_dashboard(
        browser,
        f"{fake_api}#token={quote(TOKEN, safe='')}",
        tmp_path,
        secondaries=["s1", "s2", "s3", "s4", "almacén-β"],
        file="videos/<script>alert(1)</script>.mp4",
        downloading="videos/lecture-0007.mp4",
    )
    assert page["queued"] >= 1 and page["perVideo"] >= 1
    assert any("s4 is down" in alert for alert in page["alerts"]), page["alerts"]
    for name in ("dashboard-1366x768.png", "dashboard-390x844.png"):
        assert (tmp_path / name).stat().st_size > 10_000

    # Search runs on the central, slice after slice until the page is full.
    search = browser.find_element("id", "files-q")
    search.send_keys("lecture-11")
    page = wait_for(
        "search results",
        lambda: (
            (p := read_page(browser))["files"][:1] == ["videos/lecture-1100.mp4"] and p
        ),
    )
    assert len(page["files"]) == 50 and not page["filesNextDisabled"]
    assert all("lecture-11" in name for name in page["files"])
    browser.find_element("id", "files-next").click()
    wait_for(
        "the next page of results",
        lambda: read_page(browser)["files"][:1] == ["videos/lecture-1150.mp4"],
    )
    browser.find_element("id", "files-prev").click()
    wait_for(
        "the first page again",
        lambda: read_page(browser)["files"][:1] == ["videos/lecture-1100.mp4"],
    )


# --- against a real central -------------------------------------------------


def central_has_web() -> bool:
    result = subprocess.run(
        [str(BIN / "twistd"), "redesdl-central", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--web" in result.stdout


def web_url(log: Path) -> str | None:
    """The dashboard's URL, as the central logs it once it listens."""
    text = log.read_text(errors="replace")
    found = re.search(r"web listening on (127\.0\.0\.1:\d+)", text)
    return f"http://{found.group(1)}/" if found else None


@pytest.fixture
def web_cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, str]]:
    """A central with --web and three slow secondaries; yields it and the URL."""
    if not central_has_web():
        pytest.skip("twistd redesdl-central has no --web option in this branch")
    with LocalCluster(
        tmp_path / "cluster",
        central_args=["--web", "tcp:0:interface=127.0.0.1"],
        secondary_args=["--rate-limit", "512K"],
    ) as cluster:
        assert cluster.central is not None
        url = wait_until_url(cluster.central.log)
        yield cluster, url


def wait_until_url(log: Path) -> str:
    return wait_for("the central to print its dashboard URL", lambda: web_url(log))


def test_dashboard_against_a_real_central(
    web_cluster: tuple[LocalCluster, str], browser: Any, tmp_path: Path
) -> None:
    cluster, url = web_cluster
    data = os.urandom(24 * 1024 * 1024)
    (cluster.data(1) / "videos").mkdir()
    (cluster.data(1) / "videos" / "big.mp4").write_bytes(data)
    cluster.wait_for_sources("videos/big.mp4", 3, timeout=120)
    client = cluster.start_client("get", "videos/big.mp4", "-o", str(tmp_path / "b"))
    try:
        check_dashboard(
            browser,
            url,
            tmp_path,
            secondaries=["s1", "s2", "s3"],
            file="videos/big.mp4",
            downloading="videos/big.mp4",
        )
    finally:
        client.terminate()
        client.communicate(timeout=30)


def test_web_url_is_found_in_a_log(tmp_path: Path) -> None:
    log = tmp_path / "central.log"
    log.write_text("x redesdl-central web listening on 127.0.0.1:4321\n")
    assert web_url(log) == "http://127.0.0.1:4321/"
