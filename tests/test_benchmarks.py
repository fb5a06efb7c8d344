"""The benchmarks' reference pipeline runs as the authors' scripts run: in a process of its own, torch first."""
import numpy as np
import pytest

from benchmarks import reference
from benchmarks.__main__ import run_reference
from paperlib import build_model, threads


@pytest.mark.skipif(threads.USER_WAIT_POLICY is not None, reason="the environment sets OMP_WAIT_POLICY itself")
def test_the_reference_runs_in_its_own_process_with_openmps_default_wait_policy():
    assert threads.PASSIVE_WAIT  # this process: paperlib asked for passive waiting (tests/conftest.py imports it first)
    model = build_model("lenet5", 8, 1.0, seed=0)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8), np.arange(40) % 10
    rows, seconds, policy = run_reference("noise_sweep", ("lenet5", 8, 1.0, 0), model.state_dict(), images, labels,
                                          [0.0], 2, num_workers=0)
    assert policy is None and seconds > 0  # not paperlib's PASSIVE: OpenMP's own default there
    assert [tuple(r) for r in rows] == reference.noise_sweep(model, images, labels, [0.0], 2, num_workers=0)
    seen, _, _ = run_reference("train_steps", ("lenet5", None, None, 0), None, images, labels, 2, batch_size=8,
                               num_workers=0)
    assert seen == 16
