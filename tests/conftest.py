import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.npz").exists())


@pytest.fixture(params=GOLDEN_CASES)
def golden_case(request):
    return GOLDEN / request.param


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a usable CUDA device (skipped, with one reason, without)")


def pytest_runtest_setup(item):
    # Skipped from here rather than by a skipif mark, so that the summary shows the
    # reason once for all CUDA tests instead of once per test.
    if item.get_closest_marker("cuda") is not None:
        from netgen import CUDA_SKIP_REASON
        if CUDA_SKIP_REASON:
            pytest.skip(CUDA_SKIP_REASON)


def pytest_terminal_summary(terminalreporter):
    try:
        from test_fuzz import FUZZ_COUNTS
    except ImportError:
        return
    if FUZZ_COUNTS:
        terminalreporter.write_line("fuzz cases run: " + ", ".join(f"{k}: {v}" for k, v in sorted(FUZZ_COUNTS.items()))
                                    + f" (total {sum(FUZZ_COUNTS.values())})")
