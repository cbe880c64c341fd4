"""The ttfs-window conversion's search of window ranges and steps
(conversion/window.py search_windows) and normalise's range_scales."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.conversion.window import _SearchEstimator, convert_window, quantised_forward, search_windows
from ttfs_native.model import INPUT_NAME
from ttfs_native.model.ann import ann_predictions
from ttfs_native.model.window_settings import windowed_layers
from ttfs_native.simulation.window_plan import plan_for

from test_window import run


@pytest.mark.parametrize("arch", ["resnet_blocks", "conv_strides_dilation"])
def test_range_scales_move_one_layer_and_keep_the_ann(arch):
    ann, x, _ = netgen.make(arch, n=24)
    plain = tn.normalise(ann, x, 99.0)
    name = next(n for n in windowed_layers(plain) if n != plain.output_layer.name)
    moved = tn.normalise(ann, x, 99.0, range_scales={name: 0.5})
    a, b = plain.ann_forward(x, return_all=True), moved.ann_forward(x, return_all=True)
    # the layer's activations double (its lambda halved); later layers are back on their own scale
    np.testing.assert_allclose(b[name], 2 * a[name], rtol=1e-5, atol=1e-6)
    out = plain.output_layer.name
    np.testing.assert_allclose(b[out], a[out], rtol=1e-4, atol=1e-5)
    assert np.array_equal(ann_predictions(moved, x), ann_predictions(plain, x))
    assert moved.metadata["normalisation"]["range_scales"] == {name: 0.5}


def test_range_scales_errors_name_the_layer():
    ann, x, _ = netgen.make("resnet_blocks", n=8)
    with pytest.raises(ValueError, match="'nope' is not a normalised layer"):
        tn.normalise(ann, x, range_scales={"nope": 2.0})
    name = windowed_layers(ann)[0]
    with pytest.raises(ValueError, match=f"range_scales\\['{name}'\\] must be a positive number"):
        tn.normalise(ann, x, range_scales={name: 0.0})
    branch = next(s.name for s in ann.layers if s.is_branch)
    with pytest.raises(ValueError, match=f"'{branch}' is not a normalised layer"):
        tn.normalise(ann, x, range_scales={branch: 2.0})


@pytest.fixture(scope="module", params=["resnet_blocks", "depthwise_maxpool", "mlp"])
def searched(request):
    ann, x, labels = netgen.make(request.param, n=48)
    budget = 5 * (len(windowed_layers(ann)) + 1) + 1
    plain = convert_window(ann, x, max_steps=budget, search=False)
    model = convert_window(ann, x, max_steps=budget)
    return ann, x, labels, plain, model


def test_search_keeps_the_budget_and_never_loses_agreement(searched):
    ann, x, _, plain, model = searched
    w0, w1 = plain.simulation["window"], model.simulation["window"]
    total = lambda w: w["input_steps"] + sum(w["steps"].values())  # noqa: E731
    assert total(w1) == total(w0)
    assert model.simulation["duration"] <= model.metadata["window_conversion"]["max_steps"]
    record = model.metadata["window_conversion"]["search"]
    assert record["samples"] == len(x)            # by default, every calibration sample
    assert record["agree_after"] >= record["agree_before"]
    assert all(v > 0 for v in record["range_scales"].values())
    assert plain.metadata["window_conversion"]["search"] is None
    target = ann_predictions(ann, x)

    def agree(m):
        return np.mean(quantised_forward(m, x, plan_for(m)).argmax(1) == target)
    # the search's float32 estimator and the float64 one may differ at ties only
    assert agree(model) == pytest.approx(record["agree_after"], abs=1 / len(x) + 1e-12)
    assert agree(model) >= agree(plain) - 1 / len(x)


def test_searched_model_snn_equals_its_estimator(searched):
    _, x, _, _, model = searched
    result, raw = run(model, x)
    est = quantised_forward(model, x, plan_for(model))
    assert np.array_equal(result.predictions, est.argmax(1))


def test_search_estimator_equals_the_estimator_and_updates_incrementally():
    ann, x, _ = netgen.make("resnet_blocks", n=32)
    model = convert_window(ann, x, max_steps=31, search=False)
    window = model.simulation["window"]
    steps = {INPUT_NAME: window["input_steps"], **window["steps"]}
    est = _SearchEstimator(model, x, window)
    ones = dict.fromkeys(steps, 1.0)
    full = est.run(ones, steps)
    out = model.output_layer.name
    exact = quantised_forward(model, x, plan_for(model))       # levels of the output layer: logits
    np.testing.assert_allclose(full[out].reshape(len(x), -1), exact, rtol=1e-4, atol=1e-4)
    node = windowed_layers(model)[1]
    scales, longer = dict(ones, **{node: 0.7}), dict(steps, **{node: steps[node] + 3})
    again = est.run(scales, longer, full, {node})
    fresh = est.run(scales, longer)
    for key in fresh:
        assert np.array_equal(again[key], fresh[key]), key


def test_search_bad_arguments():
    ann, x, _ = netgen.make("mlp", n=8)
    with pytest.raises(ValueError, match="search_samples must be an integer >= 1"):
        convert_window(ann, x, max_steps=20, search_samples=0)
    with pytest.raises(ValueError, match="search_rounds must be an integer >= 0"):
        convert_window(ann, x, max_steps=20, search_rounds=-1)
    w = convert_window(ann, x, max_steps=20, search=False).simulation["window"]
    _, steps, record = search_windows(convert_window(ann, x, max_steps=20, search=False), x, w, rounds=0)
    assert sum(steps.values()) == w["input_steps"] + sum(w["steps"].values())
    assert record["samples"] == len(x)
