"""Two simulators in two Python threads give the results they give alone (GIL released)."""
import threading

import pytest

import netgen
import ttfs_native as tn


@pytest.mark.parametrize("backend", netgen.NATIVE_BACKENDS)
def test_two_threads_match_sequential_runs(backend):
    jobs = []
    for arch in ("conv_strides_dilation", "branches_concat"):
        model, x, _ = netgen.make(arch, n=40)
        sim = tn.Simulator(model, duration=40, backend=backend, batch_size=8)
        jobs.append((sim, x, sim.run(x)))
    results = [None, None]

    def work(i):
        sim, x, _ = jobs[i]
        results[i] = [sim.run(x) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (_, _, alone), runs in zip(jobs, results):
        assert runs is not None
        for r in runs:
            netgen.assert_identical(r, alone)
