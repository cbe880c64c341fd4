"""Fuzzing: mutated model folders, weights and inputs end in a result or a clear
exception, never a crash, a hang or silent garbage. The number of cases run is
printed in the test summary."""
import copy
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import ttfs_native as tn
from conftest import GOLDEN

CLEAN_ERRORS = (tn.ModelError, ValueError, FileNotFoundError)
FUZZ_COUNTS = {}
BASE = GOLDEN / "cnn_max" / "model"
BASE_JSON = json.loads((BASE / "model.json").read_text())
with np.load(BASE / "weights.npz") as _w:
    BASE_WEIGHTS = {k: _w[k] for k in _w.files}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.integers(-2 ** 40, 2 ** 40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["same", "valid", "relu", "softmax", "Dense", "Conv2D", "MaxPooling2D",
                       "Flatten", "input", "0Conv2D_8x8x8"]),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)


def _count(name):
    FUZZ_COUNTS[name] = FUZZ_COUNTS.get(name, 0) + 1


def _load_and_simulate(path):
    """Load and briefly simulate; return None or the clean exception."""
    try:
        model = tn.load_model(path)
        x = np.random.default_rng(0).random((2,) + model.input_shape, dtype=np.float32)
        result = tn.Simulator(model, duration=4, backend="cpu").run(x)
        assert result.counts.shape == (2, model.num_classes, 4)
        for name, times in result.first_spike_times.items():
            assert np.all((times == 0) | ((times >= 1) & (times <= 4))), name
    except CLEAN_ERRORS as e:
        assert str(e)
        return e
    return None


@FUZZ
@given(data=st.data())
def test_mutated_model_json(tmp_path_factory, data):
    _count("model.json mutations")
    desc = copy.deepcopy(BASE_JSON)
    action = data.draw(st.sampled_from(["set", "delete", "drop_layer", "swap", "top"]))
    layers = desc["layers"]
    i = data.draw(st.integers(0, len(layers) - 1))
    if action == "set":
        key = data.draw(st.sampled_from(sorted(set(layers[i]) | {"units", "filters", "axis", "padding"})))
        layers[i][key] = data.draw(json_values)
    elif action == "delete":
        layers[i].pop(data.draw(st.sampled_from(sorted(layers[i]))))
    elif action == "drop_layer":
        layers.pop(i)
    elif action == "swap":
        j = data.draw(st.integers(0, len(layers) - 1))
        layers[i], layers[j] = layers[j], layers[i]
    else:
        desc[data.draw(st.sampled_from(["input_shape", "layers", "format", "version"]))] = data.draw(json_values)
    path = tmp_path_factory.mktemp("m")
    (path / "model.json").write_text(json.dumps(desc))
    np.savez(path / "weights.npz", **BASE_WEIGHTS)
    _load_and_simulate(path)


weight_arrays = st.one_of(
    st.builds(lambda shape, dtype: np.ones(shape, dtype),
              st.lists(st.integers(0, 9), min_size=0, max_size=4).map(tuple),
              st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_, np.complex64])),
    st.just(np.array(["text"])),
)


@FUZZ
@given(data=st.data())
def test_mutated_weights(tmp_path_factory, data):
    _count("weights.npz mutations")
    arrays = dict(BASE_WEIGHTS)
    key = data.draw(st.sampled_from(sorted(arrays)))
    action = data.draw(st.sampled_from(["replace", "drop", "nan", "truncate"]))
    path = tmp_path_factory.mktemp("w")
    (path / "model.json").write_text(json.dumps(BASE_JSON))
    if action == "replace":
        arrays[key] = data.draw(weight_arrays)
    elif action == "drop":
        arrays.pop(key)
    elif action == "nan":
        arrays[key] = arrays[key].copy()
        arrays[key].flat[data.draw(st.integers(0, arrays[key].size - 1))] = \
            data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    np.savez(path / "weights.npz", **arrays)
    if action == "truncate":
        raw = (path / "weights.npz").read_bytes()
        (path / "weights.npz").write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    error = _load_and_simulate(path)
    if action in ("nan", "drop", "truncate"):
        assert error is not None  # never silently accepted


@FUZZ
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=5),
       dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_,
                              np.complex64, object]),
       special=st.sampled_from([None, np.nan, np.inf, -np.inf, 1e30]),
       layout=st.sampled_from(["c", "fortran", "strided", "readonly"]),
       backend=st.sampled_from(["cpu", "reference"]))
def test_fuzzed_inputs(shape, dtype, special, layout, backend):
    _count("simulator inputs")
    rng = np.random.default_rng(len(shape))
    # half of the cases get the right trailing shape, so the deeper checks are reached
    if len(shape) >= 1 and shape[0] % 2 == 0:
        shape = [shape[0] % 4] + [8, 8, 1]
    x = rng.random(shape).astype(dtype) if dtype is not object else np.empty(shape, object)
    if special is not None and x.size and dtype not in (np.uint8, np.bool_, np.int64, object):
        with np.errstate(over="ignore"):
            x.flat[0] = special
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=0)[::2]
    elif layout == "readonly":
        x.setflags(write=False)
    sim = tn.Simulator(BASE, duration=3, backend=backend)
    try:
        r = sim.run(x)
    except (ValueError, TypeError) as e:
        assert str(e)
        return
    assert np.isfinite(np.asarray(x, np.float32)).all()  # only finite input gives a result
    assert r.counts.shape == (x.shape[0], 10, 3)


@pytest.mark.parametrize("duration, dt", [(1e12, 1.0), (1.0, 1e-12), (math.inf, 1.0), (5.0, 1e300)])
def test_extreme_durations_are_refused_up_front(duration, dt):
    _count("extreme durations")
    with pytest.raises(ValueError):
        tn.Simulator(BASE, duration=duration, dt=dt)


def test_huge_result_is_refused_before_allocation():
    _count("extreme durations")
    sim = tn.Simulator(BASE, duration=900_000, backend="cpu")
    with pytest.raises(ValueError, match="GiB"):
        sim.run(np.zeros((50_000, 8, 8, 1), np.float32))
