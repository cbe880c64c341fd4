"""The ttfs-window coding (docs/WINDOW_SEMANTICS.md): exactness against the ANN,
golden files, settings and errors."""
import json
from pathlib import Path

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.conversion.window import convert_window, error_bound, quantised_forward
from ttfs_native.model import ModelError, ops
from ttfs_native.model.ann import ann_predictions
from ttfs_native.model.transforms import fold_average_pooling
from ttfs_native.model.window_settings import windowed_layers
from ttfs_native.simulation.window_plan import plan_for
from ttfs_native.simulation.window_reference import simulate

GOLDEN = Path(__file__).parent / "data" / "window"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.npz").exists())
# clipped ReLU (max_value) is refused by this coding for now (test_clear_errors)
ARCHS = sorted(a for a, (_, layers) in netgen.ARCHITECTURES.items() if not any("max_value" in r for r in layers))


def run(model, x, labels=None, **kwargs):
    """(SimulationResult, raw reference arrays) of a window-coded model."""
    kwargs.setdefault("duration", model.simulation["duration"])
    sim = tn.Simulator(model, coding="ttfs-window", backend="reference", **kwargs)
    raw = simulate(model, x, sim.params, sim.fanouts, sim._window_plan)
    return sim.run(x, labels), raw


def snn_levels(model, result) -> dict:
    """Level of every windowed / max-pool neuron: its reference step minus its spike step."""
    plan = plan_for(model)
    return {name: np.where(t > 0, plan.ref[name] - np.round(t).astype(np.int64), 0)
            for name, t in result.first_spike_times.items() if name in plan.ref}


@pytest.fixture(scope="module", params=[(a, s) for a in ARCHS for s in (False, True)],
                ids=lambda p: f"{p[0]}{'-signed' if p[1] else ''}")
def converted(request):
    arch, signed = request.param
    ann, x, labels = netgen.make(arch, n=24, signed_input=signed)
    # the coding's own exactness: windows at the maximum (the search would clip tails)
    model = convert_window(ann, x, max_steps=8 * (len(windowed_layers(ann)) + 2), percentile=100, search=False)
    result, raw = run(model, x, labels)
    return ann, model, x, labels, result, raw


def test_output_membrane_within_the_derived_bound(converted):
    _, model, x, _, _, raw = converted
    plan = plan_for(model)
    exact = quantised_forward(model, x, plan, quantise=())
    out = raw["output_membrane"].reshape(len(x), -1)
    bound = error_bound(model, x, plan)
    assert np.all(np.abs(out - exact) <= bound)
    # a worst case (it adds |w| E over every input), but it shrinks as 1/S
    window = model.simulation["window"]
    finer = dict(window, input_steps=4 * window["input_steps"],
                 steps={k: 4 * v for k, v in window["steps"].items()})
    from ttfs_native.simulation.window_plan import build_window_plan
    assert np.all(error_bound(model, x, build_window_plan(model, finer)) <= 0.26 * bound)
    # the exact level forward is the stored ANN's pre-activation
    out_spec = model.output_layer
    acts = model.ann_forward(x, return_all=True)
    w = model.weights[out_spec.name]
    logits = ops.weighted(out_spec, acts[out_spec.inbound[0]], w["kernel"], w["bias"]).reshape(len(x), -1)
    np.testing.assert_allclose(exact, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())


def test_snn_equals_the_quantised_estimator(converted):
    """Levels equal the float64 estimator's except within float32 rounding of a half level."""
    _, model, x, _, result, raw = converted
    plan = plan_for(model)
    est = quantised_forward(model, x, plan, return_all=True)
    same = total = 0
    for name, levels in snn_levels(model, result).items():
        same += int(np.sum(levels == est[name]))
        total += levels.size
    assert same / total >= 0.995, same / total
    np.testing.assert_allclose(raw["output_membrane"].reshape(len(x), -1), est[model.output_layer.name],
                               atol=0.25 * np.abs(est[model.output_layer.name]).max())


def test_at_most_one_spike_per_neuron_and_results_layout(converted):
    _, model, x, labels, result, _ = converted
    plan = plan_for(model)
    for spec in model.spiking_layers:
        counts = result.spike_counts[spec.name]
        if spec is model.output_layer:
            assert np.all(counts == 0)
        else:       # zero_spikes: every hidden neuron fires exactly once
            assert np.all(counts == spec.size)
            t = result.first_spike_times[spec.name]
            assert np.all(t >= plan.first[spec.name]) and np.all(t <= plan.ref[spec.name])
    assert np.all(result.decision_step == plan.read_step)
    assert np.all(result.accuracy_t[:plan.read_step - 1] == 0)
    assert result.accuracy_t[-1] == np.mean(result.predictions == labels)
    assert np.all(result.counts.sum(axis=1)[:, plan.read_step - 1:] == 1)
    # every spike is counted once with its fan-out; the input spikes too
    fan = tn.Simulator(model, coding="ttfs-window", backend="reference",
                       duration=model.simulation["duration"]).fanouts
    per_sample = sum(float(f.sum()) * (2 if name == "input" and plan.signed_input else 1)
                     for name, f in fan.items() if name != model.output_layer.name)
    np.testing.assert_allclose(result.synops_t.sum(axis=1), per_sample)


def test_silent_zeros_change_no_membrane(converted):
    _, model, x, labels, result, raw = converted
    window = dict(model.simulation["window"], zero_spikes=False)
    silent, raw_silent = run(model, x, labels, window=window)
    np.testing.assert_array_equal(raw_silent["output_membrane"], raw["output_membrane"])
    np.testing.assert_array_equal(silent.predictions, result.predictions)
    for name, t in silent.first_spike_times.items():
        fired = t > 0
        np.testing.assert_array_equal(t[fired], result.first_spike_times[name][fired])
    assert silent.synops_t.sum() < result.synops_t.sum()


@pytest.mark.parametrize("arch", ARCHS)
def test_fine_resolution_predicts_as_the_ann(arch):
    ann, x, labels = netgen.make(arch, n=24, seed=3)
    windows = len(windowed_layers(fold_average_pooling(ann)))   # (the conversion folds what it can)
    model = convert_window(ann, x, max_steps=1024 * (windows + 1) + 1, percentile=100, split="uniform",
                           search=False)
    assert set(model.simulation["window"]["steps"].values()) == {1024}
    result, raw = run(model, x, labels)
    np.testing.assert_array_equal(result.predictions, ann_predictions(ann, x))


def test_rounding_to_the_nearest_level_by_hand():
    """One Dense neuron, one input: level = clip(floor(w k S1/S0 + b S1 + 1/2), 0, S1)."""
    layers = [{"name": "flat", "type": "Flatten"}, {"name": "h", "type": "Dense", "units": 1},
              {"name": "out", "type": "Dense", "units": 2}]
    weights = {"h": {"kernel": np.array([[0.5]], np.float32), "bias": np.array([0.1], np.float32)},
               "out": {"kernel": np.array([[1.0, -1.0]], np.float32), "bias": np.zeros(2, np.float32)}}
    ann = tn.Model((1, 1, 1), layers, weights)
    window = {"input_steps": 4, "input_range": 1.0, "steps": {"h": 10}}
    model = tn.Model((1, 1, 1), layers, weights, simulation={"coding": "ttfs-window", "duration": 16.0,
                                                                  "window": window})
    x = np.array([0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 2.0], np.float32).reshape(-1, 1, 1, 1)
    result, raw = run(model, x)
    k_in = np.clip(np.floor(x.ravel() * 4 + 0.5), 0, 4)
    k_h = np.clip(np.floor(0.5 * k_in * 10 / 4 + 1.0 + 0.5), 0, 10)
    np.testing.assert_array_equal(snn_levels(model, result)["h"].ravel(), k_h)
    # spike step = window start (1 + S_0 = 5) + S_1 - level
    np.testing.assert_array_equal(result.first_spike_times["h"].ravel(), 5 + 10 - k_h)
    np.testing.assert_allclose(raw["output_membrane"][:, 0], k_h / 10, rtol=1e-6)
    assert ann is not None


def test_max_pool_is_the_earliest_spike():
    ann, x, _ = netgen.make("depthwise_maxpool", n=8)
    model = convert_window(ann, x, max_steps=60)
    result, _ = run(model, x)
    levels = snn_levels(model, result)
    expect = ops.max_pool(levels["pw1"].astype(np.float32), model.layer("mp"))
    np.testing.assert_array_equal(levels["mp"], expect)


# ------------------------------------------------------------------ golden
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_reproduced_bit_for_bit(case):
    folder = GOLDEN / case
    model = tn.load_model(folder / "model")
    assert model.simulation["coding"] == "ttfs-window"
    x, y = np.load(folder / "x.npy"), np.load(folder / "y.npy")
    result, raw = run(model, x, y)
    expected = np.load(folder / "expected.npz")
    for key in expected.files:
        if key.startswith("spike_times/"):
            got = result.first_spike_times[key.split("/", 1)[1]]
        elif key.startswith("spike_counts/"):
            got = result.spike_counts[key.split("/", 1)[1]]
        elif key == "output_membrane":
            got = raw["output_membrane"]
        else:
            got = getattr(result, key)
        np.testing.assert_array_equal(got, expected[key], err_msg=f"{case}: {key}")


def test_golden_cases_cover_every_layer_type_and_option():
    types, options = set(), set()
    for case in GOLDEN_CASES:
        model = tn.load_model(GOLDEN / case / "model")
        types |= {s.type for s in model.layers}
        window = model.simulation["window"]
        options |= {k for k in ("signed_input",) if window[k]} | ({"silent"} if not window["zero_spikes"] else set())
    from ttfs_native.model.layers import LAYER_TYPES, MERGE_TYPES
    assert types == set(LAYER_TYPES)
    assert MERGE_TYPES
    assert options == {"signed_input", "silent"}


# ---------------------------------------------------------------- settings
def test_settings_saved_and_loaded(tmp_path):
    ann, x, _ = netgen.make("mlp", n=8)
    model = convert_window(ann, x, max_steps=30)
    tn.save_model(model, tmp_path / "m")
    loaded = tn.load_model(tmp_path / "m")
    assert loaded.simulation == model.simulation
    assert json.loads((tmp_path / "m" / "model.json").read_text())["simulation"]["coding"] == "ttfs-window"
    assert int(model.simulation["duration"]) == plan_for(model).read_step <= 30


@pytest.mark.parametrize("change, message", [
    (lambda s: s["window"].update(input_steps=0), "input_steps"),
    (lambda s: s["window"].update(input_range=-1.0), "input_range"),
    (lambda s: s["window"]["steps"].update(d1=2.5), "steps.d1"),
    (lambda s: s["window"]["steps"].pop("d1"), "missing"),
    (lambda s: s["window"].update(zero_spikes="yes"), "zero_spikes"),
    (lambda s: s["window"].update(extra=1), "unknown key"),
    (lambda s: s.pop("window"), "needs a 'window'"),
    (lambda s: s.update(coding="rate"), "coding"),
])
def test_bad_settings_name_the_key(tmp_path, change, message):
    ann, x, _ = netgen.make("mlp", n=8)
    model = convert_window(ann, x, max_steps=30)
    desc = model.to_json()
    settings = json.loads(json.dumps(desc["simulation"]))
    change(settings)
    desc["simulation"] = settings
    tn.save_model(model, tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ModelError, match=message):
        tn.load_model(tmp_path / "m")


def test_clear_errors():
    ann, x, _ = netgen.make("mlp", n=8)
    model = convert_window(ann, x, max_steps=30)
    with pytest.raises(ValueError, match="read at step"):
        tn.Simulator(model, coding="ttfs-window", backend="reference", duration=5)
    with pytest.raises(ValueError, match="needs window settings"):
        tn.Simulator(ann, coding="ttfs-window", backend="reference", duration=30)
    with pytest.raises(ValueError, match="only used by coding"):
        tn.Simulator(model, backend="reference", duration=30, window=model.simulation["window"])
    with pytest.raises(ValueError, match="coding must be one of"):
        tn.Simulator(model, coding="window", backend="reference", duration=30)
    with pytest.raises(ValueError, match="max_steps"):
        convert_window(ann, x, max_steps=3)
    clipped, xc, _ = netgen.make("upsample_clip", n=4)
    with pytest.raises(ModelError, match="clipped ReLU"):
        convert_window(clipped, xc, max_steps=60)
    mp, xs = netgen.signed_max_pool_case()
    with pytest.raises(ModelError, match="max pooling of the signed"):
        convert_window(mp, xs, max_steps=30)
    pooled_out = tn.Model((4, 4, 1), [{"name": "c", "type": "Conv2D", "filters": 2, "kernel_size": 3},
                                      {"name": "p", "type": "AveragePooling2D", "pool_size": 2}],
                          {"c": {"kernel": np.ones((3, 3, 1, 2), np.float32), "bias": np.zeros(2, np.float32)}})
    with pytest.raises(ModelError, match="weighted output layer"):
        convert_window(pooled_out, np.ones((2, 4, 4, 1), np.float32), max_steps=30)


def test_early_stop_stops_at_the_read_step():
    ann, x, labels = netgen.make("softmax_output", n=8)
    model = convert_window(ann, x, max_steps=30)
    full, _ = run(model, x, labels, duration=50)
    early, _ = run(model, x, labels, duration=50, early_stop=True)
    np.testing.assert_array_equal(early.predictions, full.predictions)
    assert np.all(early.stop_step == plan_for(model).read_step) and np.all(full.stop_step == 50)


def test_digits_cnn_at_64_steps():
    """The bundled digits CNN (average pooling, no batch norm): the estimator agrees
    with the ANN on the test split, and the SNN with the estimator."""
    from ttfs_native.datasets import bundled_calibration_set, bundled_model, bundled_test_set
    ann = bundled_model(plain=True)
    x_test, y_test = bundled_test_set()
    model = convert_window(ann, bundled_calibration_set()[0], max_steps=64)
    assert int(model.simulation["duration"]) <= 64
    est = quantised_forward(model, x_test, plan_for(model)).argmax(1)
    ann_pred = ann_predictions(ann, x_test)
    assert np.mean(est == ann_pred) >= 0.98
    assert np.mean(est == y_test) >= np.mean(ann_pred == y_test) - 0.01
    result, _ = run(model, x_test[:60], y_test[:60])
    np.testing.assert_array_equal(result.predictions, est[:60])


def test_convert_command_writes_a_window_folder_that_simulates_without_flags(tmp_path, capsys):
    """`convert --coding ttfs-window` then `simulate DIR` (issue 15 item 2)."""
    pytest.importorskip("onnx")
    from test_convert_cli import _tiny_onnx
    from ttfs_native.cli import main
    from ttfs_native.model.ann import ann_predictions
    net = _tiny_onnx(tmp_path / "net.onnx")
    x = np.random.default_rng(3).uniform(0, 1, (40, 6, 6, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "win"
    assert main(["convert", str(net), "--coding", "ttfs-window", "--calibration", str(tmp_path / "x.npy"),
                 "--max-steps", "48", "--out", str(out)]) == 0
    model = tn.load_model(out)
    assert model.simulation["coding"] == "ttfs-window"
    assert int(model.simulation["duration"] / model.simulation["dt"]) <= 48
    assert "window search on 40 calibration samples: predictions equal to the ANN's" in capsys.readouterr().out
    assert main(["convert", str(net), "--coding", "ttfs-window", "--calibration", str(tmp_path / "x.npy"),
                 "--max-steps", "48", "--no-search", "--out", str(tmp_path / "plain")]) == 0
    assert tn.load_model(tmp_path / "plain").metadata["window_conversion"]["search"] is None
    assert "window search" not in capsys.readouterr().out
    assert main(["convert", str(net), "--calibration", str(tmp_path / "x.npy"), "--no-search",
                 "--out", str(tmp_path / "dyn")]) == 2
    assert "--no-search/--search-samples apply to --coding ttfs-window" in capsys.readouterr().err
    assert main(["convert", str(net), "--coding", "ttfs-window", "--calibration", str(tmp_path / "x.npy"),
                 "--search-samples", "0", "--out", str(tmp_path / "w0")]) == 2
    assert main(["convert", str(net), "--coding", "ttfs-window", "--calibration", str(tmp_path / "x.npy"),
                 "--max-steps", "48", "--search-samples", "20", "--out", str(tmp_path / "w20")]) == 0
    assert tn.load_model(tmp_path / "w20").metadata["window_conversion"]["search"]["samples"] == 20
    assert main(["simulate", str(out), "--input", str(tmp_path / "x.npy"), "--backend", "reference",
                 "--out", str(tmp_path / "r.npz")]) == 0
    predictions = np.load(tmp_path / "r.npz")["predictions"]
    assert np.mean(predictions == ann_predictions(tn.from_onnx(net), x)) >= 0.9
    # the Python API gives the same folder; labels belong to the other coding
    same = tn.convert(net, x, coding="ttfs-window", max_steps=48)
    assert same.simulation == model.simulation
    with pytest.raises(ValueError, match="ttfs-window needs none"):
        tn.convert(net, x, np.zeros(40, np.int64), coding="ttfs-window")
    assert main(["convert", str(net), "--coding", "ttfs-window", "--calibration", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "x.npy"), "--out", str(tmp_path / "w2")]) == 2


def test_residual_add_delays_its_shortcut_to_the_latest_window():
    """An Add's window opens when its latest group source's window ends; the
    shortcut's spikes are delayed by the windows they skipped (WINDOW_SEMANTICS.md "Add")."""
    ann, x, _ = netgen.make("resnet_blocks", n=8)
    model = convert_window(ann, x, max_steps=60)
    plan = plan_for(model)
    steps = model.simulation["window"]["steps"]
    assert plan.start["add1"] == plan.ref["b1a"] and plan.delays["add1"] == [0, steps["b1a"]]
    assert plan.start["add2"] == plan.ref["b2a"] and plan.delays["add2"] == [0, steps["b2a"]]
    assert [src for src, _, _ in plan.groups["add2"]] == ["b2a", "add1"]   # the branch reads b2a, proj add1
    # without the delay the shortcut's ramps would run windows too long: the SNN would not be the estimator
    result, _ = run(model, x)
    undelayed = dict(plan.delays)
    plan.delays.update(add1=[0, 0], add2=[0, 0])
    sim = tn.Simulator(model, coding="ttfs-window", backend="reference", duration=model.simulation["duration"])
    wrong = simulate(model, x, sim.params, sim.fanouts, plan)["output_membrane"]
    plan.delays.update(undelayed)
    est = quantised_forward(model, x, plan)
    assert np.allclose(result.output_membrane, est, atol=1e-3)
    assert not np.allclose(wrong, est, atol=1e-3)


def test_residual_add_errors_are_clear():
    layers = [{"name": "lin", "type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same",
               "activation": "linear"},
              {"name": "skip", "type": "Add", "inbound": ["lin", "input"]},
              {"name": "flat", "type": "Flatten"}, {"name": "out", "type": "Dense", "units": 3}]
    x = np.random.default_rng(0).uniform(-1, 1, (8, 4, 4, 2)).astype(np.float32)
    signed_skip = netgen.normalised_model((4, 4, 2), layers, x)
    with pytest.raises(ModelError, match="identity shortcut from the signed"):
        convert_window(signed_skip, x, max_steps=40)
    convert_window(signed_skip, np.abs(x), max_steps=40)     # unsigned input: fine
    mixed, xm, _ = netgen.make("residual_mixed", n=4)   # clipped, and an Add as the output layer
    with pytest.raises(ModelError, match="clipped ReLU|weighted output layer"):
        convert_window(mixed, xm, max_steps=80)
