"""What a new user hits first: output paths checked before the work, one-line
messages that say what is wrong, warnings for badly scaled input, an API that
exports what the README uses."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.datasets import bundled_model, bundled_test_set
from ttfs_native.simulation import Simulator



@pytest.fixture
def digits(tmp_path):
    """The bundled model's folder and a few of its test inputs as .npy files."""
    x, y = bundled_test_set()
    np.save(tmp_path / "x.npy", x[:20])
    np.save(tmp_path / "y.npy", y[:20])
    folder = tmp_path / "model"
    bundled_model().save(folder)
    return folder, tmp_path / "x.npy", tmp_path / "y.npy"


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if a simulation starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("the simulation ran although an argument was bad")
    monkeypatch.setattr(Simulator, "run", refuse)


def _one_line_error(capsys, code, *words):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("target, words", [
    ("folder", ["is a folder"]),
    ("missing/r.npz", ["does not exist"]),
])
def test_simulate_checks_out_before_the_run(digits, tmp_path, capsys, no_run, target, words):
    folder, x, _ = digits
    (tmp_path / "folder").mkdir()
    code = main(["simulate", str(folder), "--input", str(x), "--duration", "8", "--out", str(tmp_path / target)])
    _one_line_error(capsys, code, "--out", *words)


def test_simulate_checks_plot_folder_before_the_run(digits, tmp_path, capsys, no_run):
    folder, x, _ = digits
    (tmp_path / "a_file").write_text("")
    code = main(["simulate", str(folder), "--input", str(x), "--duration", "8", "--plot", str(tmp_path / "a_file")])
    _one_line_error(capsys, code, "--plot", "is a file")


def test_plot_without_matplotlib_fails_before_the_run(digits, tmp_path, capsys, no_run, monkeypatch):
    folder, x, _ = digits
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as if not installed
    code = main(["simulate", str(folder), "--input", str(x), "--duration", "8", "--plot", str(tmp_path / "p")])
    _one_line_error(capsys, code, "matplotlib")


def test_convert_checks_out_before_importing(tmp_path, capsys, monkeypatch):
    import ttfs_native.cli.convert as cli_convert
    monkeypatch.setattr(cli_convert, "import_model",
                        lambda *a: (_ for _ in ()).throw(AssertionError("imported although --out is bad")))
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.float32))
    (tmp_path / "taken").write_text("a file")
    code = main(["convert", str(tmp_path / "net.onnx"), "--calibration", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "taken")])
    _one_line_error(capsys, code, "--out", "is a file")


def test_demo_checks_plot_before_the_run(tmp_path, capsys, monkeypatch):
    import ttfs_native.cli.demo as cli_demo
    monkeypatch.setattr(cli_demo, "run_demo", lambda **k: (_ for _ in ()).throw(AssertionError("ran")))
    (tmp_path / "f").write_text("")
    _one_line_error(capsys, main(["demo", "--plot", str(tmp_path / "f")]), "--plot")


def test_text_file_as_npy_does_not_suggest_allow_pickle(digits, tmp_path, capsys):
    folder, _, _ = digits
    (tmp_path / "text.npy").write_text("1,2,3\n")
    err = _one_line_error(capsys, main(["simulate", str(folder), "--input", str(tmp_path / "text.npy"),
                                        "--duration", "8"]), "not a .npy file")
    assert "pickle" not in err


def test_object_array_is_named_as_such(digits, tmp_path, capsys):
    folder, _, _ = digits
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = _one_line_error(capsys, main(["simulate", str(folder), "--input", str(tmp_path / "obj.npy"),
                                        "--duration", "8"]), "Python objects")
    assert "allow_pickle" not in err


def test_input_folder_is_one_line(digits, tmp_path, capsys):
    folder, _, _ = digits
    _one_line_error(capsys, main(["simulate", str(folder), "--input", str(tmp_path), "--duration", "8"]),
                    "not a file")


def test_demo_dt_zero_names_dt(capsys):
    _one_line_error(capsys, main(["demo", "--dt", "0", "--no-progress"]), "dt must be")


def test_missing_weights_file_is_named(digits, capsys):
    folder, x, _ = digits
    (folder / "weights.npz").unlink()
    err = _one_line_error(capsys, main(["simulate", str(folder), "--input", str(x), "--duration", "8"]),
                          "weights.npz")
    assert "conv1" in err


def test_raw_pixels_get_a_warning(digits):
    x, y = bundled_test_set()
    sim = Simulator(bundled_model(), duration=8, backend="reference")
    with pytest.warns(UserWarning, match="normalised on inputs in"):
        sim.run((x[:4] * 255).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.run(x[:4])   # the range the model was normalised on: no warning


def test_raw_pixels_warning_reaches_the_cli(digits, tmp_path, capsys):
    folder, x, _ = digits
    np.save(tmp_path / "raw.npy", (np.load(x) * 255).astype(np.uint8))
    assert main(["simulate", str(folder), "--input", str(tmp_path / "raw.npy"), "--duration", "8"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "pixels / 255" in err


def test_simulate_and_demo_report_the_same_operation_ratio(digits, capsys):
    """Both compare with the ANN as trained (before pooling was folded)."""
    from ttfs_native.demo import run_demo
    report = run_demo(num_samples=20, backend="cpu")
    s = report.settings
    folder, x, y = digits
    sim = Simulator(folder, backend="cpu", duration=s["duration"], dt=s["dt"], v_thresh=s["v_thresh"],
                    leak=s["leak"])
    result = sim.run(np.load(x), np.load(y))
    assert result.ann_ops == pytest.approx(report.ann_ops)
    assert result.synops_per_sample / result.ann_ops == pytest.approx(report.synops_ratio)


def test_star_import_works_on_a_cpu_only_build():
    """`from ttfs_native import *` must not need the CUDA-only DeviceArray."""
    code = ("import sys, types, importlib\n"
            "import ttfs_native._core as real\n"
            "fake = types.ModuleType('ttfs_native._core')\n"
            "fake.__dict__.update({k: v for k, v in vars(real).items() if k != 'DeviceArray'})\n"
            "fake.cuda_compiled = False\n"
            "sys.modules['ttfs_native._core'] = fake\n"
            "from ttfs_native import *\n"
            "import ttfs_native\n"
            "names = set(globals())\n"
            "missing = [n for n in ttfs_native.__all__ if n not in names]\n"
            "assert not missing, missing\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_public_api_has_what_the_readme_uses():
    import re
    from pathlib import Path
    readme = Path(__file__).resolve().parent.parent / "README.md"
    if not readme.is_file():
        pytest.skip("not a source checkout")
    used = set(re.findall(r"\btn\.([A-Za-z_]\w*)", readme.read_text()))
    assert used, "the README's Python examples use `import ttfs_native as tn`"
    # DeviceArray exists only in builds with the CUDA backend (tn.DeviceArray says so on others)
    cuda_only = set() if tn.build_info()["cuda"] else {"DeviceArray"}
    missing = sorted(n for n in used - cuda_only if not hasattr(tn, n))
    assert not missing, f"README uses tn.{missing} which ttfs_native does not export"
    assert {"normalise", "calibrate", "convert"} <= set(tn.__all__)
    import importlib
    for module, names in re.findall(r"^from (ttfs_native[\w.]*) import ([\w, ]+)$", readme.read_text(), re.M):
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"README: from {module} import {name.strip()}"
