"""The golden cases produced by the original simulator (tests/data/golden, from shared/oracle)."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.model import connectivity


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_golden_case_reproduced(golden_case, backend):
    result, expected = netgen.run_golden(golden_case, backend)
    netgen.assert_golden(result, expected, f"{golden_case.name}/{backend}")


def test_golden_connectivity_in_toolbox_convention(golden_case):
    model = tn.load_model(golden_case / "model")
    conn = np.load(golden_case / "connectivity.npz")
    fanouts = connectivity.snntoolbox_fanouts(model)
    for key in conn.files:
        if key.startswith("fanout/"):
            np.testing.assert_array_equal(fanouts[key[len("fanout/"):]], float(conn[key]))
    assert connectivity.ann_operations(model, "snntoolbox") == float(conn["operations_ann"])


def test_golden_early_stop_keeps_predictions(golden_case):
    full, _ = netgen.run_golden(golden_case, "cpu")
    early, _ = netgen.run_golden(golden_case, "cpu", early_stop=True)
    np.testing.assert_array_equal(early.predictions, full.predictions)
    decided = full.decision_step > 0
    np.testing.assert_array_equal(early.stop_step[decided], full.decision_step[decided])
    assert early.synops_t.sum() <= full.synops_t.sum()
