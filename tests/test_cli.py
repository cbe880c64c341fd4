"""The `ttfs-native` command line: simulate writes the contract's arrays, bad input exits 2."""
import json
import subprocess
import sys

import numpy as np
import pytest

import netgen
from ttfs_native.cli import main


def _simulate(case, out, *extra):
    info = json.loads((case / "case.json").read_text())
    args = ["simulate", str(case / "model"), "--input", str(case / "x.npy"), "--labels", str(case / "y.npy"),
            "--duration", str(info["duration"]), "--dt", str(info["dt"]), "--out", str(out)]
    if info["leak"]:
        args.append("--leak")
    return main(args + list(extra))


@pytest.mark.parametrize("backend", ["reference"] + netgen.NATIVE_BACKENDS)
def test_simulate_reproduces_golden_case(golden_case, tmp_path, backend, capsys):
    out = tmp_path / "r.npz"
    assert _simulate(golden_case, out, "--backend", backend, "--ops-convention", "snntoolbox") == 0
    assert "SNN accuracy" in capsys.readouterr().out
    got, expected = np.load(out), np.load(golden_case / "expected.npz")
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert got["spike_times/" + expected.files[-1].split("/", 1)[1]].dtype == np.float32


def test_console_script_runs(golden_case, tmp_path):
    out = tmp_path / "r.npz"
    proc = subprocess.run([sys.executable, "-m", "ttfs_native", "simulate", str(golden_case / "model"),
                           "--input", str(golden_case / "x.npy"), "--duration", "8", "--early-stop",
                           "--num-samples", "5", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    r = np.load(out)
    assert r["predictions"].shape == (5,) and r["counts"].shape[2] == 8
    assert "accuracy_t" not in r.files  # no labels given


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.__setitem__("input", "missing.npy"), "input file not found"),
    (lambda a: a.__setitem__("model", "no_such_model"), "model folder not found"),
    (lambda a: a.__setitem__("duration", "-3"), "duration must be > 0"),
    (lambda a: a.__setitem__("input", "bad_shape.npy"), "expected (N, 8, 8, 1)"),
    (lambda a: a.__setitem__("input", "nan.npy"), "NaN or Inf"),
    (lambda a: a.__setitem__("input", "not_npy.npy"), "is not a .npy file"),
])
def test_bad_input_exits_2_with_one_line(golden_case, tmp_path, capsys, mutate, message):
    np.save(tmp_path / "bad_shape.npy", np.zeros((3, 7, 8, 1), np.float32))
    x = np.load(golden_case / "x.npy")[:3].copy()
    x[0, 0, 0, 0] = np.inf
    np.save(tmp_path / "nan.npy", x)
    (tmp_path / "not_npy.npy").write_text("hello")
    a = {"model": str(golden_case / "model"), "input": str(golden_case / "x.npy"), "duration": "5"}
    mutate(a)
    for key in ("input",):
        if not a[key].startswith("/"):
            a[key] = str(tmp_path / a[key])
    code = main(["simulate", a["model"], "--input", a["input"], "--duration", a["duration"]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_cuda_memory_limit_option(golden_case, tmp_path, capsys):
    from ttfs_native.cli.common import byte_count
    assert byte_count("512M") == 512 << 20 and byte_count("8GiB") == 8 << 30 and byte_count("1500") == 1500
    out = tmp_path / "r.npz"
    args = ["simulate", str(golden_case / "model"), "--input", str(golden_case / "x.npy"), "--duration", "5",
            "--backend", "cpu", "--num-samples", "2", "--out", str(out)]
    assert main(args + ["--cuda-memory-limit", "1G"]) == 0  # accepted, used by the cuda backend only
    for bad in ("12x", "0", "-3G", "inf"):
        with pytest.raises(SystemExit) as exit_info:
            main(args + ["--cuda-memory-limit", bad])
        assert exit_info.value.code == 2
        assert "--cuda-memory-limit" in capsys.readouterr().err
