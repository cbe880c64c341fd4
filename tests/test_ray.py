"""Scaling out on Ray: results identical to one in-process run whatever the
workers and chunks, a killed worker's items rerun, nothing lost or duplicated,
and a clear message where Ray is absent. The tests that need Ray share one
local Ray (2 CPUs) per session and skip where Ray is not installed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.ray import SNNPredictor

GOLDEN = Path(__file__).parent / "data" / "golden"
PACKAGE_PARENT = str(Path(tn.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def softmax_case():
    model, x, labels = netgen.make("softmax_output", n=30)
    want = tn.Simulator(model, duration=30, backend="cpu").run(x, labels)
    return model, x, labels, want


def _assert_npz_equal(got_path, want_path):
    got, want = np.load(got_path), np.load(want_path)
    assert got.files == want.files
    for key in want.files:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# ------------------------------------------------------------ without Ray
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_parts_run_with_their_offsets_equal_one_run(softmax_case, backend, tmp_path):
    model, x, labels, _ = softmax_case
    sim = tn.Simulator(model, duration=30, backend=backend)
    whole = sim.run(x[:15], labels[:15])
    parts = [sim.run(x[lo:lo + 5], sample_offset=lo) for lo in (0, 5, 10)]
    joined = tn.SimulationResult.concatenate(parts, labels[:15])
    whole.to_npz(tmp_path / "whole.npz")
    joined.to_npz(tmp_path / "joined.npz")
    _assert_npz_equal(tmp_path / "joined.npz", tmp_path / "whole.npz")  # every array, accuracy_t too
    # the softmax output's stream is keyed by the index: without the offsets the parts differ
    unkeyed = np.concatenate([sim.run(x[lo:lo + 5]).counts for lo in (0, 5, 10)])
    assert not np.array_equal(unkeyed, whole.counts)
    with pytest.raises(ValueError, match="sample_offset must be a non-negative integer"):
        sim.run(x, sample_offset=-1)


def test_importing_the_package_never_imports_ray():
    code = ("import sys, ttfs_native, ttfs_native.ray, ttfs_native.cli; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=PACKAGE_PARENT))
    assert proc.returncode == 0, proc.stderr


def test_ray_option_without_ray_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    case = GOLDEN / "mlp"
    code = main(["simulate", str(case / "model"), "--input", str(case / "x.npy"), "--duration", "8",
                 "--ray", "local", "--workers", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'ttfs-native[ray]'" in err


@pytest.mark.parametrize("extra, message", [
    (["--workers", "2"], "--workers needs --ray"),
    (["--chunk-size", "5"], "--chunk-size needs --ray"),
])
def test_ray_options_need_ray(extra, message, capsys):
    case = GOLDEN / "mlp"
    code = main(["simulate", str(case / "model"), "--input", str(case / "x.npy"), "--duration", "8"] + extra)
    assert code == 2 and message in capsys.readouterr().err


def test_shard_input_needs_ray(tmp_path, capsys):
    np.save(tmp_path / "part0.npy", np.load(GOLDEN / "mlp" / "x.npy")[:4])
    code = main(["simulate", str(GOLDEN / "mlp" / "model"), "--input", str(tmp_path), "--duration", "8"])
    assert code == 2 and "add --ray local" in capsys.readouterr().err


def test_predictor_columns_match_the_simulator():
    model, x, _ = netgen.make("depthwise_maxpool", n=9)  # a ReLU output layer
    want = tn.Simulator(model, duration=40, backend="cpu").run(x)
    out_layer = model.output_layer.name
    layer = model.spiking_layers[0].name
    predictor = SNNPredictor(model, input_column="pixels", spike_time_layers=[layer], duration=40)
    got = predictor({"pixels": x, "id": np.arange(9)})
    np.testing.assert_array_equal(got["id"], np.arange(9))  # the batch's columns are kept
    np.testing.assert_array_equal(got["prediction"], want.predictions)
    np.testing.assert_array_equal(got["synops"], want.synops_t.sum(axis=1))
    np.testing.assert_array_equal(got[f"first_spike_time_{layer}"], want.first_spike_times[layer])
    times = want.first_spike_times[out_layer].reshape(9, -1)
    first = np.where(times > 0, times, np.inf).min(axis=1)
    np.testing.assert_array_equal(got["first_output_spike_time"], np.where(np.isinf(first), np.nan, first))


def test_predictor_keys_a_softmax_stream_by_the_index_column(softmax_case):
    model, x, _, want = softmax_case
    predictor = SNNPredictor(model, input_column="x", index_column="i", duration=30)
    rows = np.array([3, 4, 5, 17, 18, 0])  # two runs of consecutive indices and a lone row
    got = predictor({"x": x[rows], "i": rows})
    np.testing.assert_array_equal(got["prediction"], want.predictions[rows])
    np.testing.assert_array_equal(got["synops"], want.synops_t[rows].sum(axis=1))


def test_predictor_reads_grayscale_images_and_names_bad_input():
    model, x, _ = netgen.make("softmax_output", n=4)  # input (4, 4, 1)
    predictor = SNNPredictor(model, duration=10)
    images = np.empty(4, dtype=object)
    for i in range(4):
        images[i] = x[i, :, :, 0]  # a column of separately stored 2-D images
    np.testing.assert_array_equal(predictor({"image": images})["prediction"],
                                  predictor({"image": x})["prediction"])
    with pytest.raises(ValueError, match=r"expected \(N, 4, 4, 1\)"):
        predictor({"image": np.zeros((2, 5, 5, 1), np.float32)})
    with pytest.raises(ValueError, match="no column 'image'"):
        predictor({"pixels": x})
    with pytest.raises(ValueError, match="no spiking layer named 'nope'"):
        SNNPredictor(model, spike_time_layers=["nope"], duration=10)


# --------------------------------------------------------------- with Ray
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'ttfs-native[ray]')")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:  # workers import ttfs_native and these tests' modules as this process does
        path = os.pathsep.join([PACKAGE_PARENT, str(Path(__file__).parent)])
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.parametrize("case, workers, chunk", [("cnn_avg", 2, 13), ("mlp_leak", 1, 40)])
def test_cli_on_ray_writes_the_local_result(ray_session, tmp_path, case, workers, chunk):
    info = json.loads((GOLDEN / case / "case.json").read_text())
    args = ["simulate", str(GOLDEN / case / "model"), "--input", str(GOLDEN / case / "x.npy"),
            "--labels", str(GOLDEN / case / "y.npy"), "--duration", str(info["duration"])]
    args += ["--leak"] if info["leak"] else []
    assert main(args + ["--out", str(tmp_path / "local.npz")]) == 0
    assert main(args + ["--out", str(tmp_path / "ray.npz"), "--ray", "local", "--workers", str(workers),
                        "--chunk-size", str(chunk)]) == 0
    _assert_npz_equal(tmp_path / "ray.npz", tmp_path / "local.npz")


def test_simulate_on_ray_equals_one_run(ray_session, softmax_case):
    from ttfs_native.ray import simulate
    model, x, labels, want = softmax_case
    got = simulate(model, x, labels, workers=2, chunk_size=4, duration=30)
    netgen.assert_identical(got, want)
    np.testing.assert_array_equal(got.accuracy_t, want.accuracy_t)


def test_map_batches_equals_one_run(ray_session, softmax_case):
    model, x, _, want = softmax_case
    ds = ray_session.data.from_items([{"image": x[i], "index": i} for i in range(len(x))])
    out = ds.map_batches(SNNPredictor, fn_constructor_kwargs=dict(model_dir=model, index_column="index",
                                                                  duration=30),
                         concurrency=2, batch_size=7).to_pandas()
    out = out.sort_values("index")
    np.testing.assert_array_equal(out["index"].to_numpy(), np.arange(len(x)))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), want.predictions)
    np.testing.assert_array_equal(out["synops"].to_numpy(), want.synops_t.sum(axis=1))


def _simulator(model):
    return tn.Simulator(model, duration=30, backend="cpu")


def _die_once_then_simulate(sim, item):
    """Kills its worker process the first time any worker calls it (a marker file
    records it), then simulates like the library's workers do."""
    marker, offset, x = item
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return offset, sim.run(x, sample_offset=offset).counts


def test_a_killed_worker_is_restarted_and_nothing_is_lost(ray_session, softmax_case, tmp_path):
    from ttfs_native.ray import map_ordered
    model, x, _, want = softmax_case
    marker = str(tmp_path / "died")
    items = ((marker, lo, x[lo:lo + 3]) for lo in range(0, len(x), 3))
    out = list(map_ordered(_die_once_then_simulate, items, workers=2, setup=_simulator, setup_args=(model,)))
    assert os.path.exists(marker)  # a worker did die
    assert [offset for offset, _ in out] == list(range(0, len(x), 3))  # each item once, in order
    np.testing.assert_array_equal(np.concatenate([counts for _, counts in out]), want.counts)


def _fail(state, item):
    raise ValueError(f"item {item} is bad")


def test_an_error_of_the_function_is_raised_not_retried(ray_session):
    from ttfs_native.ray import map_ordered
    with pytest.raises(ValueError, match="item 1 is bad"):
        list(map_ordered(_fail, [1, 2], workers=1))


def test_shard_inputs_give_the_local_result_in_parts(ray_session, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    case = GOLDEN / "cnn_avg"
    x, y = np.load(case / "x.npy")[:50], np.load(case / "y.npy")[:50]
    base = ["simulate", str(case / "model"), "--duration", "64"]
    assert main(base + ["--input", str(case / "x.npy"), "--num-samples", "50",
                        "--out", str(tmp_path / "local.npz")]) == 0
    want = np.load(tmp_path / "local.npz")
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "part-0.npy", x[:23])
    np.save(tmp_path / "npy" / "part-1.npy", x[23:])
    flat = pa.array(list(x.reshape(50, -1)), type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"pixels": flat, "label": y.astype(np.int64)}), tmp_path / "in.parquet",
                   row_group_size=20)
    for name, extra in [("npy", []), ("in.parquet", ["--input-column", "pixels", "--label-column", "label"])]:
        out = tmp_path / f"out-{name}"
        assert main(base + ["--input", str(tmp_path / name), "--out", str(out), "--ray", "local",
                            "--workers", "2", "--chunk-size", "16"] + extra) == 0
        index = json.loads((out / "index.json").read_text())
        assert index["samples"] == 50
        assert [p["first_sample"] for p in index["parts"]] == \
            list(np.cumsum([0] + [p["samples"] for p in index["parts"]])[:-1])
        parts = [np.load(out / p["file"]) for p in index["parts"]]
        assert all(p.files == parts[0].files for p in parts)
        assert set(want.files) - set(parts[0].files) <= {"accuracy_t", "labels"}
        for key in want.files:
            if want[key].ndim == 0:  # per run, e.g. ann_ops
                assert all(p[key] == want[key] for p in parts), key
            elif key != "accuracy_t":  # a part's own accuracy
                np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), want[key], err_msg=key)
    assert index["accuracy"] == np.mean(want["predictions"] == y)


def test_cli_in_another_process_joins_a_running_cluster(ray_session, tmp_path):
    """The CLI as a second driver, by address (as on a cluster; `--ray local` starts
    its own Ray the same way but takes a fresh Ray's start-up time, ~10 s)."""
    address = ray_session.get_runtime_context().gcs_address
    case = GOLDEN / "mlp"
    common = ["-m", "ttfs_native", "simulate", str(case / "model"), "--input", str(case / "x.npy"),
              "--duration", "64", "--num-samples", "30"]
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    for out, extra in [("local.npz", []), ("ray.npz", ["--ray", address, "--workers", "2"])]:
        proc = subprocess.run([sys.executable] + common + ["--out", str(tmp_path / out)] + extra,
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
    _assert_npz_equal(tmp_path / "ray.npz", tmp_path / "local.npz")


def test_workers_that_do_not_fit_are_refused_not_awaited(ray_session, softmax_case):
    from ttfs_native.ray import simulate
    model, x, _, _ = softmax_case
    with pytest.raises(ValueError, match=r"1 worker\(s\) of 2 CPU\(s\) and 0 GPU\(s\) fit, 2 asked for"):
        simulate(model, x, workers=2, num_cpus=2, duration=30)
    with pytest.raises(ValueError, match=r"0 worker\(s\) of 1 CPU\(s\) and 1000 GPU\(s\) fit"):
        simulate(model, x, workers=1, num_gpus=1000, duration=30, backend="reference")


def test_calibration_sweep_on_ray_chooses_what_one_process_chooses(ray_session):
    """The calibration's settings simulated on Ray workers (issue 16 item 3): same trials, same choice."""
    from ttfs_native.datasets import bundled_calibration_set, bundled_model
    from ttfs_native.ray import mapper
    model = bundled_model(plain=True)
    x, y = bundled_calibration_set()
    grid = dict(max_steps=24, percentiles=(99.0, 99.9), v_thresh=(1.0, 1.5), dts=(1.0,), fold_pooling=(False,),
                per_channel=(False,), layer_factors=(0.8, 1.25), holdout=0.3, backend="cpu", num_threads=1)
    local = tn.calibrate(model, x[:120], y[:120], **grid)
    on_ray = tn.calibrate(model, x[:120], y[:120], mapper=mapper(workers=2), **grid)
    assert on_ray.best.setting == local.best.setting
    assert on_ray.model.simulation == local.model.simulation
    assert {t.setting: t.accuracy for t in on_ray.trials} == {t.setting: t.accuracy for t in local.trials}
    assert on_ray.simulated_samples == local.simulated_samples
    np.testing.assert_array_equal(on_ray.model.ann_forward(x[:5]), local.model.ann_forward(x[:5]))


def test_convert_with_labels_on_ray_writes_the_local_folder(ray_session, tmp_path, capsys):
    pytest.importorskip("onnx")
    from test_convert_cli import _tiny_onnx
    from ttfs_native.model.ann import ann_predictions
    net = _tiny_onnx(tmp_path / "net.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (60, 6, 6, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", ann_predictions(tn.from_onnx(net), x))
    args = ["convert", str(net), "--calibration", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
            "--max-steps", "16", "--threads", "1"]
    assert main(args + ["--out", str(tmp_path / "local")]) == 0
    assert main(args + ["--out", str(tmp_path / "ray"), "--ray", "local", "--workers", "2"]) == 0
    local, on_ray = tn.load_model(tmp_path / "local"), tn.load_model(tmp_path / "ray")
    assert on_ray.simulation == local.simulation
    assert on_ray.metadata["calibration"] == local.metadata["calibration"]


def test_ray_options_of_convert_need_labels(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 6, 6, 1), np.float32))
    code = main(["convert", str(tmp_path / "net.onnx"), "--calibration", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "o"), "--ray", "local"])
    assert code == 2 and "need --labels" in capsys.readouterr().err
