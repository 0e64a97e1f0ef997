"""The page in a real browser: Debian's chromium, headless, driven by Selenium.

Opens the page on a trained LeNet-5, picks a random test image and checks that the top-1 the
page shows is the Python API's prediction for that image, that the activation canvases are
not blank, draws a stroke with pointer events and sees the bars change, opens a map and a
unit (receptive field, dot product), asks for Grad-CAM, and saves desktop and phone-sized
screenshots under ``build/test-artifacts/serve/`` (``$CNNLAB_ARTIFACTS`` overrides).

No browser is downloaded: the system's /usr/bin/chromium and /usr/bin/chromedriver are used
(``.ci/install-browser.sh`` installs them). Without them this test FAILS, it does not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.analysis import summary
from cnnlab.serve import create_app
from cnnlab.training.evaluate import run_dataset
from cnnlab.training.predict import predict_file_probs
from cnnlab.training.run import load_run

from .conftest import LiveServer

pytestmark = pytest.mark.slow  # a browser start and a trained run: tens of seconds (still in `make test`)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 120  # generous: the page waits on the server, which shares the CPU with other tests


def _artifacts() -> Path:
    folder = Path(os.environ.get("CNNLAB_ARTIFACTS", "build/test-artifacts")) / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"no browser for the page test: {', '.join(missing)} missing; run `bash .ci/install-browser.sh` "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page_server(lenet_run):
    server = LiveServer(create_app([lenet_run]))
    yield server
    server.close()


def _wait(driver, condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.1)
    state = driver.execute_script("return [document.body.dataset.state, document.getElementById('error-line').textContent]")
    pytest.fail(f"timed out waiting for {what}; page state {state}")


def _ready_with_new_key(driver, old_key: str | None) -> str:
    return _wait(driver, f"""const b = document.body.dataset;
        return b.state === 'ready' && b.key && b.key !== {json.dumps(old_key)} ? b.key : null;""", "a new prediction")


def _bars(driver) -> list[tuple[str, str]]:
    return driver.execute_script("""return [...document.querySelectorAll('#top5 li')].map(
        li => [li.dataset.class, li.querySelector('.pct').textContent]);""")


NONBLANK = """
const canvas = arguments[0];
const ctx = canvas.getContext('2d');
const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
const seen = new Set();
for (let i = 0; i < data.length; i += 4) { if (data[i + 3] > 0) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]); if (seen.size > 8) break; }
return seen.size;
"""


def _colours(driver, element) -> int:
    return driver.execute_script(NONBLANK, element)


def test_the_page_shows_what_the_python_api_predicts(browser, page_server, lenet_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = browser
    d.set_window_size(1280, 900)
    d.get(f"http://127.0.0.1:{page_server.port}/")
    key = _ready_with_new_key(d, None)

    # A random test image, then the Python API on the same image.
    d.find_element(By.ID, "random-button").click()
    key = _ready_with_new_key(d, key)
    index = int(d.execute_script("return document.body.dataset.sample"))
    run = load_run(lenet_run)
    test = run_dataset(run, "test")
    path = tmp_path / "sample.png"
    Image.fromarray(test.images[index, 0].numpy(), "L").save(path)
    expected = run.data_info["classes"][int(predict_file_probs(run, [path])[0].argmax())]
    shown = d.execute_script("return document.querySelector('#top5 li').dataset.class")
    assert shown == expected == d.execute_script("return document.body.dataset.top1")
    assert f"test image #{index}" in d.find_element(By.ID, "source-line").text

    # The input and the activation canvases are drawn and not blank.
    assert _colours(d, d.find_element(By.ID, "input-canvas")) > 1
    d.execute_script("document.querySelector('.layer').scrollIntoView()")
    _wait(d, f"return [...document.querySelectorAll('.layer-canvas')].slice(0, 3).every(c => c.dataset.key === {json.dumps(key)})",
          "the first layers' maps")
    layer_canvases = d.find_elements(By.CSS_SELECTOR, ".layer-canvas")
    assert len(layer_canvases) >= 8
    for canvas in layer_canvases[:3]:
        assert _colours(d, canvas) > 2, canvas.get_attribute("aria-label")
    assert "RdBu_r" in d.find_element(By.CSS_SELECTOR, ".layer .layer-scale").text  # the colour scale is stated
    rows = summary(run.model, (1, 32, 32)).rows
    assert len(d.find_elements(By.CSS_SELECTOR, "#layer-table tbody tr")) == len(rows)
    d.save_screenshot(str(_artifacts() / "desktop.png"))

    # A map, then a unit: receptive field outline and the dot product.
    ActionChains(d).move_to_element_with_offset(layer_canvases[0], -layer_canvases[0].size["width"] // 2 + 10,
                                                -layer_canvases[0].size["height"] // 2 + 10).click().perform()
    _wait(d, "return !document.getElementById('inspector').hidden", "the map inspector")
    map_canvas = d.find_element(By.ID, "map-canvas")
    ActionChains(d).move_to_element_with_offset(map_canvas, 5, 5).click().perform()
    _wait(d, "return document.getElementById('unit-detail').textContent.includes('the layer computed')", "the unit's dot product")
    assert _colours(d, d.find_element(By.ID, "field-overlay")) >= 1
    assert "receptive field: 5 pixels" in d.find_element(By.ID, "field-line").text
    d.save_screenshot(str(_artifacts() / "desktop-unit.png"))
    d.find_element(By.ID, "inspector-close").click()

    # Grad-CAM over the input.
    d.find_element(By.ID, "gradcam-button").click()
    _wait(d, "return !document.getElementById('why-scale').hidden", "Grad-CAM")
    assert "Grad-CAM" in d.find_element(By.ID, "why-scale").text
    assert _colours(d, d.find_element(By.ID, "overlay-canvas")) > 2

    # Draw a stroke with pointer events: the bars change.
    before = _bars(d)
    canvas = d.find_element(By.ID, "draw-canvas")
    d.execute_script("window.scrollTo(0, 0)")
    chain = ActionChains(d).move_to_element_with_offset(canvas, -10, -90).click_and_hold()
    for dx, dy in [(5, 30), (5, 30), (3, 30), (2, 30), (0, 30)]:
        chain = chain.move_by_offset(dx, dy)
    chain.release().perform()
    key = _ready_with_new_key(d, key)
    after = _bars(d)
    assert after != before
    assert d.find_element(By.ID, "source-line").text.startswith("your drawing")
    assert _colours(d, d.find_element(By.ID, "draw-canvas")) >= 2  # black and the white stroke
    d.save_screenshot(str(_artifacts() / "desktop-drawing.png"))

    # One picture of the whole idea (docs/serve.png is a copy): input, bars, Grad-CAM, first maps.
    d.find_element(By.ID, "gradcam-button").click()
    _wait(d, "return !document.getElementById('why-scale').hidden", "Grad-CAM on the drawing")
    d.execute_script("document.getElementById('table-details').open = false; window.scrollTo(0, 0)")
    d.set_window_size(1280, 1250)
    _wait(d, f"return [...document.querySelectorAll('.layer-canvas')].slice(0, 4).every(c => c.dataset.key === {json.dumps(key)})",
          "the maps of the drawing")
    d.save_screenshot(str(_artifacts() / "overview.png"))
    d.set_window_size(1280, 900)


def test_the_page_fits_a_phone(browser, page_server):
    d = browser
    d.set_window_size(390, 844)
    d.get(f"http://127.0.0.1:{page_server.port}/")
    _ready_with_new_key(d, None)
    width, scroll = d.execute_script("return [document.documentElement.clientWidth, document.documentElement.scrollWidth]")
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px window"
    assert d.execute_script("return document.querySelectorAll('#top5 li').length") == 5
    d.save_screenshot(str(_artifacts() / "phone.png"))


def test_a_model_with_weights_and_no_test_images(browser, tmp_path):
    # `cnnlab serve --model resnet20 --weights mine.pth`: the page names the weights, hides
    # "random test image" (there are none), and a drawing gets the weights' predictions.
    import torch
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from cnnlab.models import create_model
    from cnnlab.serve.inference import ServedWeights

    torch.manual_seed(0)
    torch.save(create_model("resnet20").state_dict(), tmp_path / "mine.pth")
    server = LiveServer(create_app([], models=[ServedWeights("resnet20-mine", "resnet20", str(tmp_path / "mine.pth"))]))
    try:
        d = browser
        d.set_window_size(1280, 900)
        d.get(f"http://127.0.0.1:{server.port}/")
        _wait(d, "return document.body.dataset.state === 'ready' && document.getElementById('run-meta').textContent",
              "the model's page")
        assert "resnet20 (" in d.find_element(By.ID, "run-meta").text
        assert "with weights mine.pth: 10 classes" in d.find_element(By.ID, "run-meta").text
        assert not d.find_element(By.ID, "random-button").is_displayed()
        assert d.find_element(By.ID, "error-line").text == ""
        canvas = d.find_element(By.ID, "draw-canvas")
        ActionChains(d).move_to_element_with_offset(canvas, -20, -20).click_and_hold().move_by_offset(40, 40).release().perform()
        _ready_with_new_key(d, None)
        assert d.execute_script("return document.querySelector('#top5 li').dataset.class").startswith("class ")
    finally:
        server.close()
