"""Simulation settings carried by the model folder (model.json "simulation")."""
import json

import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.datasets import bundled_model, bundled_test_set
from ttfs_native.model.settings import check_simulation

SETTINGS = {"coding": "ttfs-dyn-thresh", "duration": 16.0, "dt": 0.5, "v_thresh": 1.5, "leak": False}


@pytest.fixture
def folder(tmp_path):
    model = bundled_model(plain=True)
    model.simulation = dict(SETTINGS)
    return model.save(tmp_path / "m")


def test_settings_round_trip_and_show_in_info(folder, capsys):
    desc = json.loads((folder / "model.json").read_text())
    assert desc["simulation"] == SETTINGS
    assert tn.load_model(folder).simulation == SETTINGS
    assert main(["info", str(folder)]) == 0
    assert "simulation: coding ttfs-dyn-thresh, duration 16 (32 steps), dt 0.5, v_thresh 1.5, leak off" \
        in capsys.readouterr().out


def test_a_folder_without_settings_keeps_the_defaults(tmp_path, capsys):
    path = bundled_model(plain=True).save(tmp_path / "plain")
    assert "simulation" not in json.loads((path / "model.json").read_text())
    model = tn.load_model(path)
    assert model.simulation == {}
    assert tn.Simulator.for_model(model).steps == tn.Simulator(model).steps == 200
    assert main(["info", str(path)]) == 0
    assert "simulation: none stored" in capsys.readouterr().out
    x, _ = bundled_test_set()
    np.save(tmp_path / "x.npy", x[:4])
    # the defaults agree: the CLI without --duration runs the API's (and SEMANTICS.md's) 200
    assert main(["simulate", str(path), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r.npz")]) == 0
    assert np.load(tmp_path / "r.npz")["counts"].shape[2] == 200


def test_an_older_calibration_record_is_read(tmp_path):
    path = bundled_model(plain=True).save(tmp_path / "old")
    desc = json.loads((path / "model.json").read_text())
    old = {"duration": 32.0, "dt": 0.5, "v_thresh": 1.5, "leak": False}
    desc["metadata"]["calibration"] = {"simulation": old}
    (path / "model.json").write_text(json.dumps(desc))
    assert tn.load_model(path).simulation == old
    assert tn.Simulator.for_model(path).steps == 64


@pytest.mark.parametrize("bad, match", [
    ({"coding": "rate"}, "'simulation.coding' must be one of"),
    ({"duration": -1}, "'simulation.duration' must be a positive number"),
    ({"dt": "1"}, "'simulation.dt' must be a positive number"),
    ({"leak": 1}, "'simulation.leak' must be true or false"),
    ({"duration": 1, "dt": 2}, "gives no time step"),
    ({"window_steps": [8]}, "unknown key\\(s\\) 'window_steps'"),
    ([1], "must be an object"),
])
def test_bad_settings_are_named_on_load(folder, bad, match):
    desc = json.loads((folder / "model.json").read_text())
    desc["simulation"] = bad
    (folder / "model.json").write_text(json.dumps(desc))
    with pytest.raises(tn.ModelError, match=match):
        tn.load_model(folder)


def test_the_window_coding_keeps_its_own_keys():
    window = {"input_steps": 12, "input_range": 1.0, "steps": {"c1": 12, "d1": 12}}
    settings = check_simulation({"coding": "ttfs-window", "duration": 37, "window": window})
    assert settings["window"]["steps"] == {"c1": 12, "d1": 12} and settings["duration"] == 37.0
    assert settings["window"]["zero_spikes"] is True          # defaults filled in (WINDOW_SEMANTICS.md)
    with pytest.raises(tn.ModelError, match="window_steps"):
        check_simulation({"coding": "ttfs-window", "window": window, "window_steps": [12] * 5})
    with pytest.raises(tn.ModelError, match="needs a 'window'"):
        check_simulation({"coding": "ttfs-window", "duration": 60})


def test_for_model_uses_the_settings_and_overrides_win(folder):
    sim = tn.Simulator.for_model(folder, backend="cpu")
    p = sim.params
    assert (p.duration, p.dt, p.v_thresh, p.leak, sim.steps) == (16.0, 0.5, 1.5, False, 32)
    sim = tn.Simulator.for_model(folder, backend="cpu", v_thresh=1.0, leak=None)
    assert sim.params.v_thresh == 1.0 and sim.params.dt == 0.5
    sim = tn.Simulator.for_model(folder, backend="cpu", dt=0.25)     # a new dt keeps the steps
    assert sim.steps == 32 and sim.params.duration == 8.0
    sim = tn.Simulator.for_model(folder, backend="cpu", duration=4, dt=1.0)
    assert sim.steps == 4
    with pytest.raises(TypeError, match="model folder path"):
        tn.Simulator.for_model(42)


def test_simulate_uses_the_folder_settings_unless_flags_override(folder, tmp_path, capsys):
    x, y = bundled_test_set()
    np.save(tmp_path / "x.npy", x[:20])
    np.save(tmp_path / "y.npy", y[:20])
    expected = tn.Simulator.for_model(folder, backend="cpu").run(x[:20], y[:20])
    assert main(["simulate", str(folder), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--backend", "cpu", "--out", str(tmp_path / "r.npz")]) == 0
    assert "steps 32 (dt 0.5)" in capsys.readouterr().out
    with np.load(tmp_path / "r.npz") as r:
        assert np.array_equal(r["predictions"], expected.predictions)
    assert main(["simulate", str(folder), "--input", str(tmp_path / "x.npy"), "--backend", "cpu",
                 "--duration", "4", "--dt", "1"]) == 0
    assert "steps 4 (dt 1" in capsys.readouterr().out


def test_the_bundled_calibrated_model_simulates_as_the_demo(tmp_path, capsys):
    """`simulate` on the bundled calibrated folder gives the demo's accuracy (it used to ignore the settings)."""
    from ttfs_native.demo import run_demo
    x, y = bundled_test_set()
    np.save(tmp_path / "x.npy", x[:60])
    np.save(tmp_path / "y.npy", y[:60])
    model = bundled_model()
    path = model.save(tmp_path / "cal")
    report = run_demo(num_samples=60, backend="cpu")
    result = tn.Simulator.for_model(path, backend="cpu").run(x[:60], y[:60])
    assert result.accuracy == report.snn_accuracy
