"""CPU threads: --threads, then OMP_NUM_THREADS, then the cores the load leaves free; one per data worker."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from torch.utils.data import DataLoader, Dataset

from restore.threads import available_cpus, choose_threads, single_threaded_opencv, single_threaded_worker
from tests.conftest import DATASETS, REPO


def test_threads_come_from_the_flag_then_the_environment_then_the_load(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert choose_threads(1) == (1, "--threads")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert choose_threads(None) == (1, "OMP_NUM_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS")
        threads, why = choose_threads(None)
        assert 1 <= threads <= available_cpus() and "load average" in why
    finally:
        torch.set_num_threads(before)


class ThreadsInWorker(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return torch.get_num_threads()


class OpenCVThreadsInWorker(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        import cv2

        return cv2.getNumThreads()


def test_data_workers_run_one_thread_each():
    loader = DataLoader(ThreadsInWorker(), num_workers=2, worker_init_fn=single_threaded_worker, timeout=120)
    assert [int(t) for t in loader] == [1, 1]


def test_opencv_is_single_threaded_before_workers_fork_after_its_pool_ran():
    import cv2
    import numpy as np

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        cv2.resize(np.zeros((2000, 2000, 3), np.uint8), (1000, 1000))  # the parent's pool has run
        single_threaded_opencv()
        loader = DataLoader(OpenCVThreadsInWorker(), num_workers=2, worker_init_fn=single_threaded_worker,
                            timeout=120)  # a deadlocked worker fails the test instead of hanging it
        assert [int(t) for t in loader] == [1, 1]
    finally:
        cv2.setNumThreads(before)


def test_infer_says_how_many_threads_it_used(tmp_path):
    from restore.api import build_network, save_weights

    net = build_network({"type": "MSRResNet", "num_feat": 8, "num_block": 1}, in_chans=3, out_chans=3, scale=2)
    weights = save_weights(tmp_path / "w.safetensors", net.state_dict(),
                           network={"type": "MSRResNet", "num_feat": 8, "num_block": 1},
                           task={"type": "sisr", "scale": 2})
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-m", "restore", "infer", "--weights", str(weights), "--threads", "1",
                           str(DATASETS / "Set5/LR_bicubic/X2/birdx2.png"), str(tmp_path / "out.png")],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "on cpu (1 intra-op thread(s) (--threads))" in done.stdout
