"""Random test networks covering every layer type, data-normalised so they spike."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

import ttfs_native as tn
from ttfs_native.model import weight_shapes


def _random_weights(layers, input_shape, rng):
    """Random Keras-layout weights for a layer list."""
    return {name: {"kernel": rng.normal(0, 1, k).astype(np.float32),
                   "bias": None if b is None else rng.normal(0, 0.1, b).astype(np.float32)}
            for name, (k, b) in weight_shapes(input_shape, layers).items()}


def normalised_model(input_shape, layers, x, seed=0, percentile=99.0):
    """A model with random weights, normalised by the package's own normaliser
    (the given percentile of each weighted layer's positive activations on
    ``x`` becomes 1), then every weighted layer scaled by 1/1.01 so that the
    percentile neuron sits just below 1. (Exactly 1 would put it on an exact
    threshold tie at step 1, where float32 summation order decides the spike:
    a legal disagreement that tiny test networks cannot absorb in 99.9%.)"""
    rng = np.random.default_rng(seed)
    model = tn.Model(input_shape, layers, _random_weights(layers, input_shape, rng))
    try:
        model = tn.normalise(model, x, percentile)
    except ValueError as e:   # a random layer silent on x: keep the random scale (still a valid net)
        assert "no positive activation" in str(e), e
    for w in model.weights.values():
        w["kernel"] /= np.float32(1.01)
        if w["bias"] is not None:
            w["bias"] /= np.float32(1.01)
    return model


def conv_layer(name, filters, k, strides=1, padding="same", dilation=1, inbound=None, activation="relu"):
    d = {"name": name, "type": "Conv2D", "filters": filters, "kernel_size": k, "strides": strides,
         "padding": padding, "dilation_rate": dilation, "activation": activation}
    if inbound:
        d["inbound"] = inbound
    return d


# Architectures: (input shape, layers). Together they use every layer type and option.
ARCHITECTURES = {
    "mlp": ((6, 6, 2), [
        {"name": "flat", "type": "Flatten"},
        {"name": "d1", "type": "Dense", "units": 32},
        {"name": "out", "type": "Dense", "units": 10}]),
    "conv_strides_dilation": ((11, 9, 2), [
        conv_layer("c1", 6, 3, strides=2, padding="same"),
        conv_layer("c2", 8, [3, 2], padding="valid", dilation=[1, 2]),
        {"name": "pool", "type": "AveragePooling2D", "pool_size": 2, "strides": 1, "padding": "same"},
        conv_layer("c3", 5, [2, 3], strides=[1, 2], padding="valid"),
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 7}]),
    "depthwise_maxpool": ((9, 9, 3), [
        {"name": "dw1", "type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
        conv_layer("pw1", 8, 1),
        {"name": "mp", "type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
        {"name": "dw2", "type": "DepthwiseConv2D", "kernel_size": 2, "strides": 2, "padding": "valid",
         "use_bias": False},
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 10}]),
    "branches_concat": ((8, 8, 2), [
        conv_layer("a", 4, 3, padding="same", inbound=["input"]),
        conv_layer("b", 3, 3, padding="valid", inbound=["input"]),
        {"name": "padb", "type": "ZeroPadding2D", "padding": [[1, 1], [1, 1]], "inbound": ["b"]},
        {"name": "cat", "type": "Concatenate", "axis": -1, "inbound": ["a", "padb"]},
        {"name": "pool", "type": "AveragePooling2D", "pool_size": 2},
        {"name": "mp", "type": "MaxPooling2D", "pool_size": 2, "inbound": ["cat"]},
        {"name": "cat2", "type": "Concatenate", "axis": 1, "inbound": ["pool", "mp"]},
        {"name": "re", "type": "Reshape", "target_shape": [8, -1]},
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 6}]),
    "dense_on_feature_map": ((5, 5, 3), [
        conv_layer("c1", 6, 3, padding="same"),
        {"name": "dmap", "type": "Dense", "units": 4},
        {"name": "asym", "type": "ZeroPadding2D", "padding": [[0, 2], [1, 0]]},
        {"name": "pool", "type": "AveragePooling2D", "pool_size": [3, 2], "strides": [2, 2], "padding": "same"},
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 5}]),
    "upsample_clip": ((5, 4, 2), [
        dict(conv_layer("c1", 4, 3, padding="same"), max_value=0.8),
        {"name": "up", "type": "UpSampling2D", "size": [2, 3]},
        dict(conv_layer("c2", 5, 3, strides=2, padding="valid"), max_value=3.0),
        {"name": "up2", "type": "UpSampling2D", "size": 2},
        {"name": "mp", "type": "MaxPooling2D", "pool_size": 2},
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 6}]),
    # A small ResNet: an identity block, then a strided block with a 1x1 projection shortcut.
    "resnet_blocks": ((8, 8, 2), [
        conv_layer("stem", 4, 3),
        conv_layer("b1a", 4, 3),
        conv_layer("b1b", 4, 3, activation="linear"),
        {"name": "add1", "type": "Add", "inbound": ["b1b", "stem"]},
        conv_layer("b2a", 6, 3, strides=2, inbound=["add1"]),
        conv_layer("b2b", 6, 3, activation="linear"),
        conv_layer("proj", 6, 1, strides=2, inbound=["add1"], activation="linear"),
        {"name": "add2", "type": "Add", "inbound": ["b2b", "proj"]},
        {"name": "gap", "type": "AveragePooling2D", "pool_size": 4},
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 5}]),
    # Adds of the input itself (clipped), of a depthwise branch, of three dense inbounds at the output.
    "residual_mixed": ((6, 6, 2), [
        {"name": "dw", "type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same", "activation": "linear"},
        {"name": "add0", "type": "Add", "inbound": ["dw", "input"], "max_value": 2.0},
        {"name": "flat", "type": "Flatten"},
        {"name": "d1", "type": "Dense", "units": 12},
        {"name": "d2", "type": "Dense", "units": 12, "activation": "linear"},
        {"name": "d3", "type": "Dense", "units": 12, "activation": "linear", "inbound": ["flat"],
         "use_bias": False},
        {"name": "out", "type": "Add", "inbound": ["d2", "d1", "d3"], "activation": "linear"}]),
    "softmax_output": ((4, 4, 1), [
        {"name": "flat", "type": "Flatten"},
        {"name": "d1", "type": "Dense", "units": 24},
        {"name": "out", "type": "Dense", "units": 10, "activation": "softmax"}]),
}


def make(name, n=24, seed=0, signed_input=False):
    """(model, x, labels) for one of ARCHITECTURES."""
    shape, layers = ARCHITECTURES[name]
    rng = np.random.default_rng(1000 + seed)
    x = rng.random((n,) + shape, dtype=np.float32)
    if signed_input:
        x = x - np.float32(0.3)
    model = normalised_model(shape, layers, x, seed=seed)
    labels = rng.integers(0, model.num_classes, n)
    return model, x, labels


def agreement(a, b):
    """(equal first-spike times, total) between two SimulationResults."""
    same = total = 0
    for name, t in a.first_spike_times.items():
        same += int(np.sum(t == b.first_spike_times[name]))
        total += t.size
    return same, total


# Simulator options every native backend is checked under.
OPTIONS = {
    "defaults": dict(duration=40),
    "leak": dict(duration=40, leak=True),
    "dt_half": dict(duration=20, dt=0.5),
    "dt_tenth": dict(duration=3, dt=0.1),
    "low_threshold": dict(duration=30, v_thresh=0.6),
    "short_refractory": dict(duration=30, tau_refrac=4.0),
    "early_stop": dict(duration=40, early_stop=True),
}


# Combinations a Simulator refuses: a softmax output cannot stop early.
REFUSED = {("softmax_output", "early_stop"): "early_stop needs a ReLU output"}


def option_case(arch, option, backend, n=16):
    """(model, x, labels, kwargs) of one ARCHITECTURES x OPTIONS case, or None for a
    REFUSED combination, after checking that `backend` refuses it with a clear error."""
    kwargs = dict(OPTIONS[option])
    model, x, labels = make(arch, n=n)
    if (arch, option) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[arch, option]):
            tn.Simulator(model, backend=backend, **kwargs)
        return None
    return model, x, labels, kwargs


def case_results(backend="cpu", n=6, **engine) -> dict:
    """Every ARCHITECTURES x OPTIONS case on one backend (more Simulator arguments
    in ``engine``, e.g. options=...), as flat arrays named 'arch/option/counts',
    '.../synops' and '.../<layer>' (first-spike times)."""
    out = {}
    for arch in sorted(ARCHITECTURES):
        for option, kwargs in sorted(OPTIONS.items()):
            if (arch, option) in REFUSED:
                continue
            model, x, labels = make(arch, n=n)
            r = tn.Simulator(model, backend=backend, **kwargs, **engine).run(x, labels)
            out[f"{arch}/{option}/counts"] = r.counts
            out[f"{arch}/{option}/synops"] = r.synops_t
            for name, times in r.first_spike_times.items():
                out[f"{arch}/{option}/{name}"] = times
    return out


def assert_meets_contract(got, ref, label=""):
    """SEMANTICS.md's agreement rule against the reference: >= 99.9% of first-spike
    times, every prediction, count and stop step; returns the agreement rate."""
    same, total = agreement(ref, got)
    print(f"{label}: first-spike agreement with the reference {same / total:.6f}")
    assert same / total >= 0.999
    np.testing.assert_array_equal(got.predictions, ref.predictions)
    np.testing.assert_array_equal(got.counts, ref.counts)
    np.testing.assert_array_equal(got.stop_step, ref.stop_step)
    np.testing.assert_allclose(got.synops_t, ref.synops_t)
    for name in ref.spike_counts:
        np.testing.assert_array_equal(got.spike_counts[name], ref.spike_counts[name])
    return same / total


def run_golden(case, backend, **extra):
    """(result, expected arrays) of a golden case folder simulated as the original did."""
    import json
    info = json.loads((case / "case.json").read_text())
    sim = tn.Simulator(case / "model", duration=info["duration"], dt=info["dt"], leak=info["leak"],
                       v_thresh=info["v_thresh"], tau_refrac=info["tau_refrac"], backend=backend,
                       ops_convention="snntoolbox", **extra)
    return sim.run(np.load(case / "x.npy"), np.load(case / "y.npy")), np.load(case / "expected.npz")


def assert_golden(result, expected, label=""):
    """Everything the original simulator recorded, reproduced exactly."""
    same = total = 0
    for key in expected.files:
        if key.startswith("spike_times/"):
            got = result.first_spike_times[key[len("spike_times/"):]]
            same += int(np.sum(got == expected[key]))
            total += got.size
    print(f"{label}: first-spike times equal {same}/{total} = {same / total:.6f}")
    assert same == total
    np.testing.assert_array_equal(result.predictions, expected["predictions"])
    np.testing.assert_array_equal(result.counts, expected["counts"])
    np.testing.assert_array_equal(result.accuracy_t, expected["accuracy_t"])
    np.testing.assert_array_equal(result.synops_t, expected["synops_t"])


def assert_identical(got, want):
    """Every result array equal (the native backends compute the same float32 values)."""
    np.testing.assert_array_equal(got.predictions, want.predictions)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.stop_step, want.stop_step)
    np.testing.assert_array_equal(got.synops_t, want.synops_t)
    np.testing.assert_array_equal(got.output_membrane, want.output_membrane)  # (ttfs-window; else both None)
    assert got.first_spike_times.keys() == want.first_spike_times.keys()
    for name, times in want.first_spike_times.items():
        np.testing.assert_array_equal(got.first_spike_times[name], times, err_msg=f"first spikes of {name}")
        np.testing.assert_array_equal(got.spike_counts[name], want.spike_counts[name],
                                      err_msg=f"spike counts of {name}")


_INFO = tn.build_info()
# Tests that need a usable CUDA device; tests/conftest.py skips them all with one
# reason, reported once.
CUDA_SKIP = pytest.mark.cuda
CUDA_SKIP_REASON = (None if _INFO["cuda_available"] else
                    f"CUDA backend not usable here (compiled: {_INFO['cuda']}): {_INFO['cuda_status']}")
# The native backends, for tests that hold for each of them.
NATIVE_BACKENDS = [pytest.param("cpu"), pytest.param("cuda", marks=CUDA_SKIP)]

# Convolution geometries for hypothesis: any kernel, strides, dilations (each axis
# its own), padding, depth multiplier.
GEOMETRY = dict(h=st.integers(3, 9), w=st.integers(3, 9), c=st.integers(1, 3), k=st.integers(1, 4),
                kw=st.integers(1, 4), stride=st.integers(1, 3), stride_w=st.integers(1, 3),
                dilation=st.integers(1, 2), dilation_w=st.integers(1, 2),
                padding=st.sampled_from(["valid", "same"]), depthwise=st.booleans(),
                mult=st.integers(1, 3), seed=st.integers(0, 1000))


def geometry_case(h, w, c, k, kw, stride, dilation, padding, depthwise, mult, seed, stride_w=None,
                  dilation_w=None):
    """(model, x): one convolution of the drawn geometry, then average and max pooling
    with 'same' padding and a Dense output, data-normalised."""
    strides = [stride, stride if stride_w is None else stride_w]
    dilations = [dilation, dilation if dilation_w is None else dilation_w]
    if max(strides) > 1:
        dilations = [1, 1]  # Keras allows only one of them above 1
    if padding == "valid" and ((k - 1) * dilations[0] + 1 > h or (kw - 1) * dilations[1] + 1 > w):
        padding = "same"
    conv = {"name": "conv", "kernel_size": [k, kw], "strides": strides, "dilation_rate": dilations,
            "padding": padding}
    if depthwise:
        conv.update(type="DepthwiseConv2D", depth_multiplier=mult)
    else:
        conv.update(type="Conv2D", filters=mult + 1)
    layers = [conv, {"name": "pool", "type": "AveragePooling2D", "pool_size": 2, "strides": 1,
                     "padding": "same"},
              {"name": "mp", "type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
              {"name": "flat", "type": "Flatten"}, {"name": "out", "type": "Dense", "units": 3}]
    rng = np.random.default_rng(seed)
    x = rng.random((4, h, w, c), dtype=np.float32)
    return normalised_model((h, w, c), layers, x, seed=seed), x


def signed_max_pool_case():
    """(model, x): negative inputs reach a max pool directly, so its S switches on
    at a negative maximum and its record fires from step 2 on (SEMANTICS.md, literally)."""
    layers = [{"name": "mp", "type": "MaxPooling2D", "pool_size": 2},
              {"name": "flat", "type": "Flatten"},
              {"name": "out", "type": "Dense", "units": 4}]
    rng = np.random.default_rng(3)
    x = rng.random((12, 6, 6, 1), dtype=np.float32) - np.float32(0.7)
    return normalised_model((6, 6, 1), layers, x), x
