"""The bench's PyTorch peer (bench/torch_loop.py) computes what the engine computes,
residual Adds included (it is the yardstick of bench/RESULTS.md)."""
import sys
from pathlib import Path

import numpy as np
import pytest

import ttfs_native as tn

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import networks, torch_loop  # noqa: E402


@pytest.mark.parametrize("net", ["lenet", "resnet"])
def test_torch_loop_and_ann_agree_with_the_cpu_backend(net):
    x = networks.inputs(net, 4)
    model = networks.build(net, x)
    ann = torch_loop.TorchANN(model)
    np.testing.assert_allclose(ann(ann.to_device(x)).numpy().reshape(4, -1),
                               model.ann_forward(x).reshape(4, -1), rtol=1e-4, atol=1e-5)
    loop = torch_loop.TorchTTFS(model, 40)
    theirs = loop.to_numpy(loop.run(x))
    ours = tn.Simulator(model, duration=40, backend="cpu").run(x)
    agreement = torch_loop.compare(ours, theirs)
    assert agreement["predictions_all_equal"]
    assert agreement["spike_time_agreement"] >= 0.999      # SEMANTICS.md: float32 ties may flip
    assert agreement["synops_relative_difference"] <= 1e-3
