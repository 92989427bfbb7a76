"""The web page in headless Chromium (Debian's chromium and chromium-driver, no browser
download): fill the form, submit, and see the answer and the plots drawn."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest
from server_support import fitted_laws, write_law_file

from server import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def laws_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("results")
    write_law_file(path, "synthetic", law_id="quick")
    # The same laws with one more trajectory refit, whose annealing term (B x e^40) takes its
    # loss below zero once the LR decays.
    laws = fitted_laws(path, "quick")
    tl = laws._trajectory
    theta = tl.theta_.copy()
    theta[list(tl.THETA_NAMES).index("b")] += 40.0
    tl.theta_boot_ = np.vstack([tl.theta_boot_, theta])
    laws._doc["id"] = "ridge"
    laws.save(path / "ridge" / "laws.json")
    return path


@pytest.fixture(scope="module")
def base_url(laws_dir):
    from werkzeug.serving import make_server

    app = create_app({"LAWS_DIR": str(laws_dir)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: the page test needs Debian's browser, "
            "install it with `apt-get install -y chromium chromium-driver`"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for_answer(driver, timeout=30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: (
            d.find_element("tag name", "body").get_attribute("data-state") in {"done", "error"}
        )
    )
    return driver.find_element("tag name", "body").get_attribute("data-state")


def loss_chart(driver, label: str | None = None):
    """The loss chart's dataset labels, or the y values of the dataset so labelled (None if
    there is none)."""
    if label is None:
        return driver.execute_script(
            "return Chart.getChart('loss-chart').data.datasets.map(d => d.label);"
        )
    return driver.execute_script(
        "const d = Chart.getChart('loss-chart').data.datasets.find(d => d.label === arguments[0]);"
        " return d ? d.data.map(p => p.y) : null;",
        label,
    )


def painted_pixels(driver, canvas_id: str) -> int:
    """How many pixels of the canvas are not transparent: a drawn chart has thousands."""
    return driver.execute_script(
        """
        const canvas = document.getElementById(arguments[0]);
        if (!canvas || canvas.width === 0) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
        return painted;
        """,
        canvas_id,
    )


def fill(driver, element_id: str, value: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(value)


def number(driver, element_id: str) -> float:
    return float(driver.find_element("id", element_id).text)


def test_form_answer_and_plots(browser, base_url, laws_dir):
    from selenium.webdriver.support.ui import Select

    browser.get(base_url + "/")
    assert browser.find_element("tag name", "body").get_attribute("data-state") == "ready"
    fill(browser, "n_params", "1e8")
    fill(browser, "tokens", "2e9")
    Select(browser.find_element("id", "law")).select_by_value("quick")
    browser.find_element("id", "submit").click()
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text

    expected = fitted_laws(laws_dir, "quick").predict(1e8, 2e9, seq_len=2048)
    assert number(browser, "out-lr") == pytest.approx(expected.lr, rel=1e-3)
    assert number(browser, "out-batch_tokens") == pytest.approx(expected.batch_tokens, rel=1e-3)
    assert number(browser, "out-loss") == pytest.approx(expected.loss, rel=1e-3)
    assert "95%" in browser.find_element("id", "out-lr-interval").text
    rows = browser.find_elements("css selector", "#compare-table tbody tr")
    assert len(rows) >= 2  # the chosen law and the checked presets

    for canvas in ("loss-chart", "lr-chart", "batch-chart"):
        assert painted_pixels(browser, canvas) > 2000, canvas
    assert browser.find_element("id", "loss-note").text == ""
    chart_points = browser.execute_script(
        "const c = Chart.getChart('lr-chart');"
        "return c.data.datasets.find(d => d.label.startsWith('sweep optima')).data.length;"
    )
    assert chart_points == 12  # the cells the LR law was fitted on


def test_compute_budget_mode(browser, base_url):
    browser.get(base_url + "/")
    browser.find_element("css selector", "input[name=mode][value=compute]").click()
    fill(browser, "flops", "1e21")
    browser.find_element("id", "submit").click()
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    n_params, tokens = number(browser, "out-n_params"), number(browser, "out-tokens")
    assert 6 * n_params * tokens == pytest.approx(1e21, rel=0.02)
    assert painted_pixels(browser, "lr-chart") > 2000


def test_bad_input_shows_the_error(browser, base_url):
    browser.get(base_url + "/")
    fill(browser, "n_params", "seven billion")
    browser.find_element("id", "submit").click()
    assert wait_for_answer(browser) == "error"
    message = browser.find_element("id", "error").text
    assert "not_a_number" in message and "n_params" in message


def test_a_shared_link_fills_the_form_and_asks(browser, base_url):
    browser.get(base_url + "/?n_params=3e8&tokens=6e9&law=deepseek")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    assert browser.find_element("id", "answer-law").text == "(law: deepseek)"
    # deepseek defines no loss curve: the page says so instead of drawing one
    assert "No loss curve" in browser.find_element("id", "loss-note").text
    assert painted_pixels(browser, "batch-chart") > 2000


def test_a_given_batch_is_answered_at_that_batch(browser, base_url, laws_dir):
    browser.get(base_url + "/?n_params=1e8&tokens=2e9&law=quick&batch_tokens=65536")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    expected = fitted_laws(laws_dir, "quick").predict(1e8, 2e9, seq_len=2048, batch_tokens=65536)
    assert number(browser, "out-batch_tokens") == pytest.approx(65536, rel=1e-3)
    assert number(browser, "out-lr") == pytest.approx(expected.lr, rel=1e-3)


def _law_alone_drawn(driver) -> bool:
    return driver.execute_script(
        "return Chart.getChart('loss-chart').data.datasets"
        ".some(d => d.label.startsWith('trajectory law alone'));"
    )


def test_the_loss_chart_says_what_the_residual_map_did(browser, base_url):
    """At one of the fitted runs (3.2M parameters, 2e7 tokens, batch 10,506 tokens) the curve
    carries that run's misfit: the caption says so and the law alone is drawn beside it. Far
    from every fitted run the caption says the curve is the law alone, and no second line."""
    browser.get(base_url + "/?n_params=3.2e6&tokens=2e7&law=quick&batch_tokens=10506")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    caption = browser.find_element("id", "loss-caption").text
    assert "corrected by the law's misfit on 1 like fitted run(s)" in caption, caption
    assert _law_alone_drawn(browser)
    browser.get(base_url + "/?n_params=1e8&tokens=2e9&law=quick")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    caption = browser.find_element("id", "loss-caption").text
    assert "no fitted run is like this one" in caption, caption
    assert not _law_alone_drawn(browser)


def test_the_loss_chart_marks_the_loss_laws_final_loss(browser, base_url, laws_dir):
    """At the recommended LR and batch the loss law's own final loss (fitted apart from the
    trajectory law) is marked at the curve's end and given in the caption; at a given batch,
    where the loss law's optimum is not the curve's setting, it is not."""
    browser.get(base_url + "/?n_params=1e8&tokens=2e9&law=quick")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    pred = fitted_laws(laws_dir, "quick").predict(1e8, 2e9, seq_len=2048)
    shown = [
        browser.execute_script("return Number(arguments[0]).toPrecision(4);", v)
        for v in (pred.loss, *pred.intervals["loss"])
    ]
    caption = browser.find_element("id", "loss-caption").text
    expected = f"the loss law's final loss {shown[0]} [{shown[1]}, {shown[2]}] (fitted separately)"
    assert expected in caption, caption
    assert loss_chart(browser, "loss law: final loss") == [pytest.approx(pred.loss)]
    browser.get(base_url + "/?n_params=1e8&tokens=2e9&law=quick&batch_tokens=65536")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    assert "loss law's final loss" not in browser.find_element("id", "loss-caption").text
    assert "loss law: final loss" not in loss_chart(browser)


def test_the_caption_says_when_the_band_leaves_refits_out(browser, base_url, laws_dir):
    """A bootstrap refit whose loss goes non-positive on the run is left out of the band, and
    the caption says how many of how many; where none is, it says nothing."""
    browser.get(base_url + "/?n_params=1e8&tokens=2e9&law=ridge")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    frame = fitted_laws(laws_dir, "ridge").trajectory(1e8, 2e9, seq_len=2048)
    spread = frame.attrs["interval"]
    assert spread["left_out"] == 1
    caption = browser.find_element("id", "loss-caption").text
    said = f"the 95% band leaves out 1 of {spread['refits']} bootstrap refits"
    assert said in caption, caption
    low = loss_chart(browser, "loss 95% low")
    assert low == pytest.approx(frame["loss_low"].tolist())
    assert min(low) > 0.5
    browser.get(base_url + "/?n_params=1e8&tokens=2e9&law=quick")
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    assert "bootstrap refits" not in browser.find_element("id", "loss-caption").text


def test_other_schedules_are_drawn_beside_the_curve(browser, base_url, laws_dir):
    """overlay=wsd,constant draws those schedules' curves at the main curve's peak LR and
    batch, and the caption gives each one's final loss, as the API does."""
    browser.get(
        base_url + "/?n_params=1e8&tokens=2e9&law=quick&schedule=cosine&overlay=wsd,constant"
    )
    assert wait_for_answer(browser) == "done", browser.find_element("id", "error").text
    boxes = browser.find_elements("css selector", "input[name=overlay]:checked")
    assert sorted(b.get_attribute("value") for b in boxes) == ["constant", "wsd"]
    labels = loss_chart(browser)
    assert "schedule wsd" in labels and "schedule constant" in labels
    laws = fitted_laws(laws_dir, "quick")
    main = laws.trajectory(1e8, 2e9, seq_len=2048, schedule="cosine")
    caption = browser.find_element("id", "loss-caption").text
    for name in ("wsd", "constant"):
        curve = laws.trajectory(
            1e8,
            2e9,
            schedule=name,
            lr=main.attrs["lr"],
            batch_tokens=main.attrs["batch_tokens"],
        )
        final = float(curve["loss"].iloc[-1])
        assert f"{name} {final:.4g}" in caption, (name, final, caption)
    assert browser.find_element("id", "loss-note").text == ""


def test_static_files_only(base_url, browser):
    browser.get(base_url + "/")
    sources = browser.execute_script(
        "return [...document.querySelectorAll('script[src], link[href]')]"
        ".map(e => e.src || e.href);"
    )
    assert sources and all(src.startswith(base_url) for src in sources), sources
