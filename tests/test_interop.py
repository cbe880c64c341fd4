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
    view = tn.model.model.as_host_array(producer)
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


class FakeCudaTensor:
    """Claims to live on GPU 0 (the CPU backend must refuse it before reading)."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kwargs):
        raise AssertionError("a backend without CUDA must not consume it")


def test_gpu_input_to_a_host_backend_is_refused_clearly(case):
    model, x, sim = case
    with pytest.raises(ValueError, match="CUDA device 0; the cpu backend needs it in host memory"):
        sim.run(FakeCudaTensor())


def test_spike_times_on_device_needs_the_cuda_backend(case):
    model, x, sim = case
    with pytest.raises(ValueError, match="spike_times_on_device needs backend='cuda'"):
        tn.Simulator(model, duration=20, backend="cpu", spike_times_on_device=True)


def test_dlpack_input_describes_and_owns_the_tensor():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    capsule = x.__dlpack__()
    with tn._core.DLPackInput(capsule) as view:
        assert view.shape == (2, 3, 4) and view.dtype == "float32" and view.device == (1, 0)
        assert view.c_contiguous and view.data_ptr == x.ctypes.data
    with pytest.raises(ValueError, match="unconsumed DLPack capsule"):
        tn._core.DLPackInput(capsule)  # consumed by the first
    with pytest.raises(ValueError, match="already closed"):
        view.shape
    strided = tn._core.DLPackInput(x[:, :, ::2].__dlpack__())
    assert strided.shape == (2, 3, 2) and not strided.c_contiguous
    strided.close()
    strided.close()  # idempotent
    assert tn._core.DLPackInput(np.zeros(3, np.int64).__dlpack__()).dtype == "int64"
