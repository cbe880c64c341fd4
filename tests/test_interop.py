"""Inputs from any DLPack producer; results are numpy arrays (DLPack-capable)."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn


class DLPackOnly:
    """A producer that offers nothing but the DLPack protocol (like a foreign tensor)."""

    def __init__(self, array):
        self._array = array
        self.exported = 0

    def __dlpack__(self, **kwargs):
        self.exported += 1
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


@pytest.fixture(scope="module")
def case():
    model, x, _ = netgen.make("mlp", n=6)
    return model, x, tn.Simulator(model, duration=20, backend="cpu")


def test_dlpack_input_is_read_without_copy(case):
    model, x, sim = case
    producer = DLPackOnly(x)
    view = tn.model.as_host_array(producer)
    assert producer.exported == 1 and np.shares_memory(view, x)
    np.testing.assert_array_equal(sim.run(producer).counts, sim.run(x).counts)


def test_torch_tensor_input(case):
    torch = pytest.importorskip("torch")
    model, x, sim = case
    np.testing.assert_array_equal(sim.run(torch.from_numpy(x)).counts, sim.run(x).counts)
    with pytest.raises(ValueError, match="DLPack"):
        sim.run(torch.from_numpy(x).requires_grad_())


def test_results_export_through_dlpack(case):
    model, x, sim = case
    r = sim.run(x)
    back = np.from_dlpack(r.counts)
    assert np.shares_memory(back, r.counts)
