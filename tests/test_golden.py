"""The golden cases produced by the original simulator (tests/data/golden, from shared/oracle)."""
import json

import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native import connectivity


def _run(case, backend, **extra):
    info = json.loads((case / "case.json").read_text())
    sim = tn.Simulator(case / "model", duration=info["duration"], dt=info["dt"], leak=info["leak"],
                       v_thresh=info["v_thresh"], tau_refrac=info["tau_refrac"], backend=backend,
                       ops_convention="snntoolbox", **extra)
    return sim.run(np.load(case / "x.npy"), np.load(case / "y.npy")), np.load(case / "expected.npz")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_golden_case_reproduced(golden_case, backend):
    result, expected = _run(golden_case, backend)
    same = total = 0
    for key in expected.files:
        if key.startswith("spike_times/"):
            got = result.first_spike_times[key[len("spike_times/"):]]
            same += int(np.sum(got == expected[key]))
            total += got.size
    print(f"{golden_case.name}/{backend}: first-spike times equal {same}/{total} = {same / total:.6f}")
    assert same == total
    np.testing.assert_array_equal(result.predictions, expected["predictions"])
    np.testing.assert_array_equal(result.counts, expected["counts"])
    np.testing.assert_array_equal(result.accuracy_t, expected["accuracy_t"])
    np.testing.assert_array_equal(result.synops_t, expected["synops_t"])


def test_golden_connectivity_in_toolbox_convention(golden_case):
    model = tn.load_model(golden_case / "model")
    conn = np.load(golden_case / "connectivity.npz")
    fanouts = connectivity.snntoolbox_fanouts(model)
    for key in conn.files:
        if key.startswith("fanout/"):
            np.testing.assert_array_equal(fanouts[key[len("fanout/"):]], float(conn[key]))
    assert connectivity.ann_operations(model, "snntoolbox") == float(conn["operations_ann"])


def test_golden_early_stop_keeps_predictions(golden_case):
    full, _ = _run(golden_case, "cpu")
    early, _ = _run(golden_case, "cpu", early_stop=True)
    np.testing.assert_array_equal(early.predictions, full.predictions)
    decided = full.decision_step > 0
    np.testing.assert_array_equal(early.stop_step[decided], full.decision_step[decided])
    assert early.synops_t.sum() <= full.synops_t.sum()
