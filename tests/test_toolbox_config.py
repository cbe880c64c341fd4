"""SNN Toolbox config files drive a run; unused keys warn, semantics-changing keys fail."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.simulation.toolbox_config import ConfigWarning

CONFIG = """
[simulation]
simulator = INI
duration = 24
dt = 0.5
batch_size = 3
num_to_test = 5
keras_backend = tensorflow

[cell]
v_thresh = 0.9
tau_refrac = 6
leak = True

[conversion]
spike_code = ttfs_dyn_thresh
softmax_to_relu = True

[paths]
path_wd = /somewhere
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.ini"
    path.write_text(CONFIG)
    return path


def test_config_maps_onto_simulator_arguments(config):
    model, x, _ = netgen.make("softmax_output", n=8)
    with pytest.warns(ConfigWarning, match=r"\[simulation\] keras_backend, \[paths\] path_wd"):
        sim = tn.Simulator.from_toolbox_config(model, config, backend="cpu")
    p = sim.params
    assert (p.duration, p.dt, p.v_thresh, p.tau_refrac, p.leak) == (24, 0.5, 0.9, 6, True)
    assert sim.batch_size == 3 and sim.num_to_test == 5
    assert sim.model.output_layer.activation == "relu"  # softmax_to_relu
    direct = tn.Simulator(model.with_output_activation("relu"), duration=24, dt=0.5, v_thresh=0.9,
                          tau_refrac=6, leak=True, backend="cpu").run(x)
    np.testing.assert_array_equal(sim.run(x).counts, direct.counts)


def test_keyword_arguments_override_the_file(config):
    model, _, _ = netgen.make("mlp", n=2)
    with pytest.warns(ConfigWarning):
        sim = tn.Simulator.from_toolbox_config(model, config, duration=10, backend="cpu")
    assert sim.params.duration == 10 and sim.params.dt == 0.5


@pytest.mark.parametrize("line, message", [
    ("[conversion]\nspike_code = temporal_mean_rate\n", "spike_code"),
    ("[simulation]\nreset_between_nth_sample = 0\n", "reset_between_nth_sample"),
    ("[simulation]\nduration = soon\n", "not a valid float"),
    ("[cell]\nv_thresh = 1\n", "no \\[simulation\\] duration"),
    ("no section header\n", "not a valid config file"),
])
def test_bad_config_is_an_error(tmp_path, line, message):
    path = tmp_path / "bad.ini"
    path.write_text(line)
    model, _, _ = netgen.make("mlp", n=2)
    with pytest.raises(ValueError, match=message):
        tn.Simulator.from_toolbox_config(model, path)


def test_cli_config_limits_samples_and_warns(config, golden_case, tmp_path, capsys):
    out = tmp_path / "r.npz"
    code = main(["simulate", str(golden_case / "model"), "--input", str(golden_case / "x.npy"),
                 "--config", str(config), "--backend", "cpu", "--out", str(out)])
    assert code == 0
    assert "warning" in capsys.readouterr().err
    r = np.load(out)
    assert r["predictions"].shape == (5,) and r["counts"].shape[2] == 48
