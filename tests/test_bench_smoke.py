"""Smoke test of the benchmark harness (bench/): a tiny CPU configuration, in-process."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

bench_main = pytest.importorskip("bench.__main__")

ROW_FIELDS = {"net", "device", "batch", "steps", "impl", "samples_run", "scaled", "batch_time_s",
              "samples_per_s", "latency_b1_ms", "snn_over_ann", "speedup_of_ours", "peak_mem_mib",
              "mem_method", "note"}


def test_bench_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = bench_main.main(["--quick", "--device", "cpu", "--nets", "lenet", "--batch", "2",
                              "--steps", "5", "--threads", "1", "--no-torch", "--json", str(out)])
    printed = capsys.readouterr().out
    for column in ("impl", "samples/s", "b1 ms", "x ANN", "ours x", "spk/neu", "syn/ANN", "mem MiB"):
        assert column in printed
    assert "ttfs-cpu" in printed and "reference" in printed and "ann-numpy" in printed

    data = json.loads(out.read_text())
    assert data["format"] == "ttfs-native-bench"
    assert data["machine"]["cpu_count"] >= 1
    rows = {r["impl"]: r for r in data["rows"]}
    assert set(rows) == {"ttfs-cpu", "reference", "ann-numpy"}
    for row in rows.values():
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert (row["net"], row["device"], row["batch"], row["steps"]) == ("lenet", "cpu", 2, 5)
        assert row["batch_time_s"] > 0 and row["samples_per_s"] > 0
    ours = rows["ttfs-cpu"]
    assert ours["speedup_of_ours"] == pytest.approx(1.0)
    assert ours["latency_b1_ms"] > 0
    assert ours["snn_over_ann"] > 0
    assert 0 <= ours["spikes_per_neuron"] <= 1
    assert ours["ann_ops"] > 0 and ours["synops_over_ann_ops"] >= 0
    assert set(ours["speedup_over"]) == {"reference", "ann-numpy"}
    ref = rows["reference"]
    assert ref["agreement"]["predictions_all_equal"]
    assert ref["agreement"]["spike_time_agreement"] >= 0.999
    assert report["rows"] and report["table"] == data["table"]


def test_bench_configurations():
    from bench import harness
    full = harness.configurations(harness.Options(devices=("cpu", "cuda")))
    keys = {(c.net, c.device, c.batch, c.steps) for c in full}
    assert ("vgg", "cuda", 256, 100) in keys and ("lenet", "cuda", 1, 64) in keys
    assert ("lenet", "cpu", 256, 64) in keys and ("lenet", "cpu", 16, 50) in keys
    assert ("lenet", "cuda", 16, 50) not in keys
    custom = harness.configurations(harness.Options(nets=("mobilenet",), batches=(1, 8), steps=(10,)))
    assert [(c.net, c.batch, c.steps) for c in custom] == [("mobilenet", 1, 10), ("mobilenet", 8, 10)]
