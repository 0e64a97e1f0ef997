"""The JSON API and its images against a real uvicorn server, checked against the Python API."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from cnnlab.analysis import summary
from cnnlab.analysis.attribution import gradcam
from cnnlab.data.drawing import prepare_digit
from cnnlab.data.image import to_model_input
from cnnlab.serve import Limits
from cnnlab.training.evaluate import run_dataset
from cnnlab.training.predict import predict_file_probs
from cnnlab.training.run import load_run
from cnnlab.viz.activations import layer_output

from .client import get, png_bytes, post_image, predict_sample, request
from .conftest import LiveServer

LENET = "lenet5-mnist"
RGB = "resnet20-colours"


@pytest.fixture(scope="module")
def server(lenet_run, rgb_run):
    from cnnlab.serve import create_app

    s = LiveServer(create_app([lenet_run, rgb_run]))
    yield s
    s.close()


@pytest.fixture(scope="module")
def lenet(lenet_run):
    return load_run(lenet_run)


@pytest.fixture(scope="module")
def mnist_test(lenet):
    return run_dataset(lenet, "test")


def _values(reply_png: bytes, meta: dict, channel: int) -> np.ndarray:
    """One channel's tile of an atlas PNG, mapped back to activations by the stated scale."""
    atlas = np.asarray(Image.open(io.BytesIO(reply_png)), dtype=np.float64)
    th, tw = meta["atlas"]["tile"]
    r, c = divmod(channel, meta["atlas"]["cols"])
    tile = atlas[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
    lo, hi = meta["scale"]["lo"], meta["scale"]["hi"]
    return lo + tile / 255.0 * (hi - lo)


def test_health_and_runs(server):
    health = get(server.port, "/api/health").json()
    assert health["ok"] is True and health["runs"] == 2
    runs = get(server.port, "/api/runs").json()["runs"]
    assert [r["id"] for r in runs] == [LENET, RGB]
    assert runs[0]["model"] == "lenet5" and runs[0]["data"] == "mnist"


def test_run_info_layer_table_is_the_analysis_summary(server, lenet):
    info = get(server.port, f"/api/runs/{LENET}").json()
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["input_size"] == [1, 32, 32] and info["pad"] == 2 and info["digit_like"] is True
    rows = summary(lenet.model, (1, 32, 32)).rows
    assert [r["name"] for r in info["layers"]] == [r.name for r in rows]
    assert [r["params"] for r in info["layers"]] == [r.params for r in rows]
    assert [r["macs"] for r in info["layers"]] == [r.macs for r in rows]
    assert [tuple(r["output_shape"]) for r in info["layers"]] == [tuple(r.output_shape) for r in rows]
    assert info["params"] == sum(p.numel() for p in lenet.model.parameters())
    first = info["layers"][0]
    assert first["type"] == "Conv2d" and first["receptive_field"] == "5" and first["conv"] is True
    assert info["filters"] == {"layer": "features.c1", "shape": [6, 1, 5, 5]}


def test_sample_prediction_equals_the_python_api(server, lenet, mnist_test, tmp_path):
    for index in (0, 7, 1234):
        reply = predict_sample(server.port, LENET, index)
        assert reply.status == 200, reply
        result = reply.json()
        assert result["source"] == {"kind": "sample", "index": index, "label": mnist_test.classes[int(mnist_test.labels[index])],
                                    "label_index": int(mnist_test.labels[index])}
        path = tmp_path / f"{index}.png"
        Image.fromarray(mnist_test.images[index, 0].numpy(), "L").save(path)
        probs = predict_file_probs(lenet, [path])[0]
        assert result["top"][0]["index"] == int(probs.argmax())
        assert np.allclose(result["probabilities"], probs.numpy(), atol=1e-5)
        assert [t["p"] for t in result["top"]] == sorted((t["p"] for t in result["top"]), reverse=True)
        assert len(result["top"]) == 5


def test_upload_of_a_test_image_equals_the_sample(server, mnist_test):
    data = png_bytes(Image.fromarray(mnist_test.images[7, 0].numpy(), "L"))
    by_upload = post_image(server.port, LENET, data).json()
    by_sample = predict_sample(server.port, LENET, 7).json()
    assert by_upload["probabilities"] == by_sample["probabilities"]
    assert by_upload["source"]["kind"] == "upload" and by_upload["source"]["format"] == "PNG"


def test_input_png_is_what_the_network_sees(server, mnist_test):
    result = predict_sample(server.port, LENET, 3).json()
    seen = np.asarray(get(server.port, result["input"]["url"]).image())
    assert seen.shape == (32, 32)
    assert np.array_equal(seen[2:30, 2:30], mnist_test.images[3, 0].numpy())
    assert seen[:2].sum() == 0 and seen[:, :2].sum() == 0  # the run's zero padding


def test_layer_pngs_carry_the_activations(server, lenet, mnist_test):
    result = predict_sample(server.port, LENET, 11).json()
    info = get(server.port, f"/api/runs/{LENET}").json()
    x = to_model_input(mnist_test.images[11:12], mean=lenet.data_info["mean"], std=lenet.data_info["std"], pad=2)
    modules = dict(lenet.model.named_modules())
    by_index = {m["index"]: m for m in result["layers"]}
    checked = 0
    for row in info["layers"]:
        if not row["maps"]:
            continue
        meta = by_index[row["index"]]
        reply = get(server.port, meta["url"])
        assert reply.status == 200 and reply.headers["content-type"] == "image/png"
        expected = layer_output(lenet.model, modules[row["name"]], x)[0].float()
        step = (meta["scale"]["hi"] - meta["scale"]["lo"]) / 255
        if row["layout"] == "vector":
            units = row["units"]
            got = _values(reply.body, meta, 0).reshape(-1)[:units]
            assert np.abs(got - expected.reshape(-1).numpy()).max() <= step * 0.51 + 1e-3
        else:
            for ch in range(row["channels"]):
                got = _values(reply.body, meta, ch)
                assert np.abs(got - expected[ch].numpy()).max() <= step * 0.51 + 1e-3, (row["name"], ch)
        checked += 1
    assert checked >= 8  # every layer of LeNet-5 but the network's own output row


def test_unit_of_a_convolution_shows_its_dot_product(server):
    result = predict_sample(server.port, LENET, 5).json()
    info = get(server.port, f"/api/runs/{LENET}").json()
    c3 = next(r for r in info["layers"] if r["name"] == "features.c3")
    unit = get(server.port, f"{result['unit_url']}?layer={c3['index']}&channel=4&row=3&col=6").json()
    conv = unit["conv"]
    assert conv["kernel_size"] == [5, 5] and len(conv["partial_sums"]) == 6
    assert conv["total"] == pytest.approx(conv["actual"], abs=1e-4)
    assert unit["value"] == pytest.approx(conv["actual"], rel=2e-3, abs=2e-3)  # float16 copy
    assert sum(conv["partial_sums"]) + conv["bias"] == pytest.approx(conv["total"], abs=1e-5)
    # c3's field: 14 pixels, jump 2, first centre 6.5 (analysis summary); unit (3, 6)
    assert unit["field"] == {"top": 6.5 + 2 * 3 - 6.5, "left": 6.5 + 2 * 6 - 6.5, "height": 14.0, "width": 14.0,
                             "global": False, "text": unit["field"]["text"]}
    # the first layer's window is the normalised input around the unit
    c1 = get(server.port, f"{result['unit_url']}?layer=0&channel=2&row=10&col=12").json()["conv"]
    assert c1["window_top_left"] == [10, 12] and len(c1["shown"]) == 1
    assert np.array(c1["shown"][0]["window"]).shape == (5, 5)


def test_unit_out_of_range_is_400(server):
    result = predict_sample(server.port, LENET, 5).json()
    for query in ("layer=0&channel=6&row=0&col=0", "layer=0&channel=0&row=28&col=0", "layer=99", "layer=x",
                  "layer=0&channel=-1"):
        reply = get(server.port, f"{result['unit_url']}?{query}")
        assert reply.status == 400, (query, reply)
        assert "\n" not in reply.error


def test_gradcam_is_the_attribution_module(server, lenet, mnist_test):
    result = predict_sample(server.port, LENET, 21).json()
    top = result["top"][0]["index"]
    g = get(server.port, f"{result['gradcam_url']}?target=top").json()
    assert g["target"] == top and g["layer"] and "Grad-CAM" in g["description"]
    heat = np.asarray(get(server.port, g["url"]).image(), dtype=np.float64) / 255
    x = to_model_input(mnist_test.images[21:22], mean=lenet.data_info["mean"], std=lenet.data_info["std"], pad=2)
    expected = gradcam(lenet.model, x, top).numpy()
    assert heat.shape == expected.shape == (32, 32)
    assert np.abs(heat - expected / max(expected.max(), 1e-12)).max() <= 1 / 255 + 1e-6
    other = get(server.port, f"{result['gradcam_url']}?target=3").json()
    assert other["target"] == 3 and other["class"] == "3"
    assert get(server.port, f"{result['gradcam_url']}?target=10").status == 400


def test_occlusion_runs_in_the_background_with_progress(server):
    result = predict_sample(server.port, LENET, 2).json()
    start = request(server.port, "POST", f"{result['occlusion_url']}?target=1")
    assert start.status in (200, 202)
    status = start.json()
    for _ in range(600):
        if status["state"] != "running":
            break
        time.sleep(0.1)
        status = get(server.port, status["status_url"]).json()
    assert status["state"] == "done", status
    assert status["done"] == status["total"] > 0
    assert status["scale"]["diverging"] is True or status["scale"]["lo"] == 0
    heat = get(server.port, status["url"]).image()
    assert heat.size == (32, 32)


def test_drawing_is_prepared_as_mnist_digits(server):
    canvas = np.zeros((280, 280), dtype=np.uint8)
    canvas[40:200, 150:170] = 255  # a "1" drawn off-centre
    result = post_image(server.port, LENET, png_bytes(Image.fromarray(canvas, "L")), kind="drawing").json()
    assert result["source"]["kind"] == "drawing"
    assert any("centred by centre of mass" in n for n in result["source"]["notes"])
    seen = np.asarray(get(server.port, result["input"]["url"]).image())
    assert np.array_equal(seen[2:30, 2:30], prepare_digit(canvas)[0].numpy())


def test_filters_png(server):
    reply = get(server.port, f"/api/runs/{LENET}/filters.png")
    img = reply.image()
    # 6 kernels of 5x5 in a 3 x 2 grid with 1-pixel gaps
    assert img.size == (3 * 6 - 1, 2 * 6 - 1)


def test_rgb_run_sample_upload_and_drawing(server, rgb_run):
    info = get(server.port, f"/api/runs/{RGB}").json()
    assert info["classes"] == ["blue", "green", "red"] and info["digit_like"] is False
    assert info["filters"]["shape"][1] == 3
    sample = predict_sample(server.port, RGB, 0).json()
    assert len(sample["top"]) == 3 and sample["source"]["label"] in info["classes"]
    gray = png_bytes(Image.new("L", (50, 70), 120))
    upload = post_image(server.port, RGB, gray).json()
    assert get(server.port, upload["input"]["url"]).image().mode == "RGB"
    drawing = post_image(server.port, RGB, png_bytes(Image.new("RGB", (280, 280), (250, 0, 0))), kind="drawing").json()
    seen = np.asarray(get(server.port, drawing["input"]["url"]).image())
    assert seen.shape == (32, 32, 3) and seen[..., 0].min() > 200
    # every drawn layer of ResNet-20 answers with an image of its stated atlas size
    for meta in sample["layers"]:
        img = get(server.port, meta["url"]).image()
        a = meta["atlas"]
        assert img.size == (a["cols"] * a["tile"][1], a["rows"] * a["tile"][0])


def test_random_sample_and_bad_samples(server):
    result = predict_sample(server.port, LENET, "random").json()
    assert 0 <= result["source"]["index"] < 10_000
    for bad in ("10000", "-1", "abc", "1e3", ""):
        reply = predict_sample(server.port, LENET, bad)
        assert reply.status == 400, (bad, reply)


def test_unknown_run_and_input_are_404(server):
    assert get(server.port, "/api/runs/nope").status == 404
    assert predict_sample(server.port, "nope", 0).status == 404
    result = predict_sample(server.port, LENET, 0).json()
    wrong_run = result["input"]["url"].replace(LENET, RGB)
    assert get(server.port, wrong_run).status == 404  # a key belongs to its run
    assert get(server.port, f"/api/runs/{LENET}/inputs/AAAAAAAAAAAAAAAA/input.png").status == 404


def test_old_inputs_expire_from_the_cache(live_app, lenet_run):
    s = live_app([lenet_run], limits=Limits(cache_items=2))
    first = predict_sample(s.port, LENET, 0).json()
    for i in (1, 2):
        predict_sample(s.port, LENET, i)
    reply = get(s.port, first["input"]["url"])
    assert reply.status == 404 and "expired" in reply.error


def test_every_response_says_load_nothing_from_elsewhere(server):
    page = get(server.port, "/")
    assert page.status == 200 and b"<canvas" in page.body
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for asset in ("/static/app.js", "/static/style.css"):
        body = get(server.port, asset).body.decode()
        assert "http://" not in body and "https://" not in body and "@import" not in body
    assert b"https://" not in page.body and b"http://" not in page.body
    assert get(server.port, "/api/health").headers["x-content-type-options"] == "nosniff"


def test_a_broken_run_is_reported_not_fatal(live_app, lenet_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(lenet_run, broken)
    for weights in broken.rglob("*.safetensors"):  # every copy of the weights, wherever the run keeps them
        weights.write_bytes(b"not weights")
    s = live_app([lenet_run, broken])
    reply = get(s.port, "/api/runs/broken")
    assert reply.status == 500 and reply.error.startswith("cannot load run broken:") and "\n" not in reply.error
    assert predict_sample(s.port, "broken", 0).status == 500
    states = {r["id"]: r["state"] for r in get(s.port, "/api/runs").json()["runs"]}
    assert states == {LENET: "not loaded", "broken": "error"}
    assert predict_sample(s.port, LENET, 0).status == 200  # the other run is served as before
