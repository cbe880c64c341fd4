"""Data-based weight normalisation (normalise.py), as SNN Toolbox's normalize_parameters."""
import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.model import weight_shapes
from ttfs_native.conversion.normalise import normalise, scale_factors


def _random_model(layers, input_shape=(8, 8, 1), seed=0):
    """A Model with random weights of the right shapes."""
    rng = np.random.default_rng(seed)
    weights = {name: {"kernel": rng.normal(0, 0.7, k).astype(np.float32),
                      "bias": None if b is None else rng.normal(0.05, 0.1, b).astype(np.float32)}
               for name, (k, b) in weight_shapes(input_shape, layers).items()}
    return tn.Model(input_shape, layers, weights)


CNN = [
    {"name": "conv1", "type": "Conv2D", "filters": 6, "kernel_size": 3, "padding": "same"},
    {"name": "pool1", "type": "AveragePooling2D", "pool_size": 2},
    {"name": "conv2", "type": "Conv2D", "filters": 8, "kernel_size": 3},
    {"name": "flat", "type": "Flatten"},
    {"name": "out", "type": "Dense", "units": 5, "activation": "relu"},
]

# Two branches with different scales, concatenated on channels, then a convolution
# and, after a second concatenation and a flatten, a Dense layer.
BRANCHES = [
    {"name": "a", "type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same", "inbound": ["input"]},
    {"name": "b", "type": "Conv2D", "filters": 2, "kernel_size": 1, "inbound": ["input"]},
    {"name": "cat", "type": "Concatenate", "inbound": ["a", "b"]},
    {"name": "pool", "type": "MaxPooling2D", "pool_size": 2, "inbound": ["cat"]},
    {"name": "c", "type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "inbound": ["pool"]},
    {"name": "cat2", "type": "Concatenate", "inbound": ["pool", "c"]},
    {"name": "flat", "type": "Flatten", "inbound": ["cat2"]},
    {"name": "out", "type": "Dense", "units": 4, "activation": "softmax", "inbound": ["flat"]},
]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).uniform(0, 1, (200, 8, 8, 1)).astype(np.float32)


def _percentiles(model, x, percentile):
    acts = model.ann_forward(x, return_all=True)
    return {s.name: float(np.percentile(acts[s.name][acts[s.name] > 0], percentile))
            for s in model.layers if s.is_weighted and s.activation != "softmax"}


@pytest.mark.parametrize("percentile", [90, 99, 99.9, 100])
def test_each_layer_percentile_becomes_one(x, percentile):
    model = normalise(_random_model(CNN), x, percentile)
    for name, value in _percentiles(model, x, percentile).items():
        assert value == pytest.approx(1.0, rel=1e-5), name


def test_predictions_are_unchanged(x):
    ann = _random_model(CNN)
    model = normalise(ann, x)
    assert np.array_equal(model.ann_forward(x).argmax(1), ann.ann_forward(x).argmax(1))


def test_scale_factors_and_percentile_are_recorded(x):
    ann = _random_model(CNN)
    model = normalise(ann, x, 99.5)
    record = model.metadata["normalisation"]
    assert record["percentile"] == 99.5
    assert record["calibration_samples"] == len(x)
    acts = ann.ann_forward(x, return_all=True)
    for name in ("conv1", "conv2", "out"):
        expected = np.percentile(acts[name][acts[name] > 0].astype(np.float64), 99.5)
        assert record["scale_factors"][name] == pytest.approx(expected, rel=1e-6)
    assert ann.metadata == {}, "the input model must not change"


def test_kernel_and_bias_follow_the_toolbox_rule(x):
    ann = _random_model(CNN)
    model = normalise(ann, x)
    lam = model.metadata["normalisation"]["scale_factors"]
    # conv2 reads pool1, which passes conv1's scale through
    np.testing.assert_allclose(model.weights["conv2"]["kernel"],
                               ann.weights["conv2"]["kernel"] * lam["conv1"] / lam["conv2"], rtol=1e-6)
    np.testing.assert_allclose(model.weights["conv2"]["bias"], ann.weights["conv2"]["bias"] / lam["conv2"],
                               rtol=1e-6)
    np.testing.assert_allclose(model.weights["conv1"]["kernel"], ann.weights["conv1"]["kernel"] / lam["conv1"],
                               rtol=1e-6)


def test_softmax_output_keeps_scale_one(x):
    layers = [dict(layer) for layer in CNN]
    layers[-1]["activation"] = "softmax"
    ann = _random_model(layers)
    model = normalise(ann, x)
    assert model.metadata["normalisation"]["scale_factors"]["out"] == 1.0
    np.testing.assert_allclose(model.ann_forward(x), ann.ann_forward(x), rtol=1e-4, atol=1e-6)


def test_normalising_again_only_changes_the_percentile(x):
    ann = _random_model(CNN)
    twice = normalise(normalise(ann, x, 99), x, 100)
    once = normalise(ann, x, 100)
    for name in once.weights:
        np.testing.assert_allclose(twice.weights[name]["kernel"], once.weights[name]["kernel"], rtol=1e-4)
    assert twice.metadata["normalisation"]["previous"]["percentile"] == 99


def test_concatenated_branches_keep_their_own_scales(x):
    ann = _random_model(BRANCHES)
    model = normalise(ann, x, 99.9)
    lam = model.metadata["normalisation"]["scale_factors"]
    assert lam["a"] != pytest.approx(lam["b"], rel=0.01), "the test needs branches of different scales"
    for name, value in _percentiles(model, x, 99.9).items():
        assert value == pytest.approx(1.0, rel=1e-5), name
    # the softmax output sees exactly the original logits
    np.testing.assert_allclose(model.ann_forward(x), ann.ann_forward(x), rtol=1e-4, atol=1e-6)


def test_spatial_concatenation_of_different_scales_is_refused(x):
    layers = [
        {"name": "a", "type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same", "inbound": ["input"]},
        {"name": "b", "type": "Conv2D", "filters": 2, "kernel_size": 1, "inbound": ["input"]},
        {"name": "cat", "type": "Concatenate", "axis": 1, "inbound": ["a", "b"]},
        {"name": "c", "type": "Conv2D", "filters": 2, "kernel_size": 3, "inbound": ["cat"]},
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 3},
    ]
    with pytest.raises(tn.ModelError, match="layer 'c'.*different normalisation scales"):
        normalise(_random_model(layers), x)


@pytest.mark.parametrize("percentile", [0, -1, 100.5, float("nan"), "99", True, None])
def test_bad_percentile_is_named(x, percentile):
    with pytest.raises(ValueError, match=r"percentile must .*\(0, 100\]"):
        normalise(_random_model(CNN), x, percentile)


def test_bad_calibration_input_is_named(x):
    model = _random_model(CNN)
    with pytest.raises(ValueError, match=r"calibration input has shape \(5, 8, 8\), expected \(N, 8, 8, 1\)"):
        normalise(model, x[:5, :, :, 0])
    with pytest.raises(ValueError, match="no samples"):
        normalise(model, x[:0])
    with pytest.raises(ValueError, match="batch_size"):
        normalise(model, x, batch_size=0)
    with pytest.raises(TypeError, match="Model"):
        scale_factors("not a model", x)
    with pytest.raises(TypeError, match="Model"):
        normalise("not a model", x)


def test_dead_layer_is_reported():
    model = _random_model(CNN)
    model.weights["conv1"]["bias"][:] = -1.0      # silent on an all-zero input
    with pytest.raises(ValueError, match="layer 'conv1' has no positive activation"):
        normalise(model, np.zeros((4, 8, 8, 1), np.float32))
