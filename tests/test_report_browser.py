"""The HTML report of a real `restore test` run, opened from disk in a real headless Chromium
(Debian's chromium + chromium-driver, driven by Selenium): no console error, the table sorts, and
every panel of an image shows the same region after a zoom."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from restore.api import read_array
from restore.cli import main
from tests.conftest import DATASETS, REPO

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-device-scale-factor=1", "--window-size=1600,1200")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile; skips, saying why, where none is installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("no browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver), as .ci/run does")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def sr_report(tmp_path_factory) -> Path:
    """`restore test` of MATLAB bicubic on Set5 x4 (its own LR files): the run folder."""
    out = tmp_path_factory.mktemp("report")
    assert main(["test", "-opt", str(REPO / "options/test_bicubic_set5.yml"), "--model", "baseline",
                 "--dataset", str(DATASETS / "Set5/HR"), "--lq", str(DATASETS / "Set5/LR_bicubic/X4"),
                 "--filename-tmpl", "{}x4", "--scale", "4", "--out", str(out)]) == 0
    return out


def _severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _shot(element) -> np.ndarray:
    """The pixels inside the element's 1-pixel border."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"))[1:-1, 1:-1]


def test_the_run_page_links_every_set_and_opens_without_errors(browser, sr_report):
    browser.get((sr_report / "index.html").as_uri())
    links = [a.get_attribute("href") for a in browser.find_elements("css selector", "h2 a")]
    assert links == [(sr_report / "Set5" / "index.html").as_uri()]
    assert _severe(browser) == []


def test_the_metrics_table_sorts_and_keeps_the_mean_row_last(browser, sr_report):
    browser.get((sr_report / "Set5" / "index.html").as_uri())
    assert _severe(browser) == []
    headers = browser.find_elements("css selector", "#metrics thead th")
    assert [h.text.replace("\n", " ") for h in headers] == ["image", "psnr (dB) Bicubic", "ssim Bicubic"]

    def column(index: int) -> list[str]:
        return [row.find_elements("tag name", "td")[index].text
                for row in browser.find_elements("css selector", "#metrics tbody tr")]

    headers[1].click()
    ascending = [float(v) for v in column(1)]
    assert ascending == sorted(ascending) and len(ascending) == 5
    headers[1].click()
    assert [float(v) for v in column(1)] == sorted(ascending, reverse=True)
    headers[0].click()
    assert column(0) == sorted(column(0))
    assert browser.find_element("css selector", "#metrics tfoot th").text == "mean"


def test_every_panel_of_an_image_shows_the_same_region_after_a_zoom(browser, sr_report):
    set_dir = sr_report / "Set5"
    browser.get((set_dir / "index.html").as_uri())
    figure = next(f for f in browser.find_elements("css selector", ".figure")
                  if f.find_element("tag name", "h3").text.endswith("baby"))
    browser.execute_script("arguments[0].scrollIntoView()", figure)
    # 4x on baby (512x512): every canvas (512x512) shows GT pixels 136..264 x 72..200.
    region = browser.execute_script("return window.restoreReport.show(arguments[0], 4, 200, 136)",
                                    figure.get_attribute("id"))
    assert region == {"x": 136, "y": 72, "w": 128, "h": 128}
    browser.execute_async_script(
        "var done = arguments[arguments.length - 1], f = window.restoreReport.figures[arguments[0]];"
        "Promise.all(f.images.map(function (i) { return i.decode(); })).then(function () { f.draw(); done(); });",
        figure.get_attribute("id"))
    canvases = figure.find_elements("tag name", "canvas")
    assert {c.get_attribute("data-region") for c in canvases} == {"136.000,72.000,128.000,128.000"}
    captions = [c.text for c in figure.find_elements("tag name", "figcaption")]
    assert captions[0] == "LQ 128x128 (x4)" and captions[1].startswith("Bicubic: psnr") and captions[2] == "GT"

    gt = read_array(DATASETS / "Set5/HR/baby.png")
    lq = read_array(DATASETS / "Set5/LR_bicubic/X4/babyx4.png")
    bicubic = read_array(set_dir / "Bicubic" / "baby.png")
    expected = [np.repeat(np.repeat(lq[18:50, 34:66], 16, 0), 16, 1),  # the same region of the LR input
                np.repeat(np.repeat(bicubic[72:200, 136:264], 4, 0), 4, 1),
                np.repeat(np.repeat(gt[72:200, 136:264], 4, 0), 4, 1)]
    for canvas, want in zip(canvases, expected, strict=True):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        shot = _shot(canvas).astype(int)
        assert shot.shape == want.shape
        assert np.mean(np.abs(shot - want)) < 1.0 and np.percentile(np.abs(shot - want), 99) <= 3
    assert _severe(browser) == []


def test_depth_panels_come_from_one_figure_and_zoom_together(browser, tmp_path):
    """Depth maps: colour-mapped maps and error maps are cells of two indexed PNGs per map."""
    import skimage.data

    folder = tmp_path / "maps"
    folder.mkdir()
    disparity = skimage.data.stereo_motorcycle()[2]  # float32, inf = unknown
    for i, (top, left) in enumerate(((0, 0), (200, 300))):
        np.save(folder / f"crop{i}.npy", disparity[top : top + 200, left : left + 240])
    shutil.copy(folder / "crop0.npy", folder / "crop2.npy")
    out = tmp_path / "report"
    assert main(["test", "--weights", str(_depth_weights(tmp_path)), "--dataset", str(folder), "--model",
                 "baseline", "--out", str(out)]) == 0
    browser.get((out / "maps" / "index.html").as_uri())
    assert _severe(browser) == []
    figure = browser.find_elements("css selector", ".figure")[0]
    browser.execute_script("arguments[0].scrollIntoView()", figure)
    browser.execute_script("window.restoreReport.show(arguments[0], 2, 100, 100)", figure.get_attribute("id"))
    canvases = figure.find_elements("tag name", "canvas")
    sources = [c.get_attribute("data-src") for c in canvases]
    name = sources[0].removeprefix("figures/")
    assert sources == [f"figures/{name}"] * 3 + [f"figures/errors/{name}"]
    assert {c.get_attribute("data-region") for c in canvases} == {"40.000,50.000,120.000,100.000"}
    captions = [c.text for c in figure.find_elements("tag name", "figcaption")]
    assert captions[0] == "LQ 60x50 (x4)" and captions[-1] == "|Bicubic - GT|"


def _depth_weights(tmp_path: Path) -> Path:
    """A weights file recording the Bicubic baseline as the network (the task comes with it)."""
    from restore.checkpoint import save_weights

    return save_weights(tmp_path / "bicubic.safetensors", {}, network={"type": "Bicubic", "method": "pil"},
                        task={"type": "depth_sr", "scale": 4, "units": "px"})
