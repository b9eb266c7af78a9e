"""End to end through the CLI: train on bundled photos, resume, test on Set5; kill -9 and resume;
two processes equal one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_restore, tiny_sisr_options

pytestmark = pytest.mark.slow


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_small_sr_network_trains_resumes_and_beats_bicubic_on_set5(tmp_path, write_options):
    options = tiny_sisr_options(
        tmp_path, name="e2e_sr", network_g={"type": "MSRResNet", "num_feat": 32, "num_block": 4},
        datasets__train__gt_size=96, datasets__train__batch_size_per_gpu=8, datasets__train__num_worker_per_gpu=2,
        train__total_iter=200, train__scheduler={"type": "MultiStepLR", "milestones": [150], "gamma": 0.5},
        val__val_freq=100, logger__print_freq=50, logger__save_checkpoint_freq=50)
    path = write_options(options)

    first = run_restore("train", "-opt", str(path), "--set", "train.total_iter=100", "--no-progress")
    assert first.returncode == 0, first.stderr
    run = tmp_path / "experiments" / "e2e_sr"
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["00000050", "00000100"]
    resumed = run_restore("train", "-opt", str(path), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    log = (next((run / "logs").glob("train_*.log"))).read_text() + resumed.stderr
    assert "resumed from" in log and "[iter 200/200]" in log and "[val Set5 @ 200] psnr" in log
    assert list((run / "tb_logger").glob("events.out.tfevents.*"))
    assert (run / "options.yml").is_file() and (run / "models/net_g_latest.safetensors").is_file()

    test = run_restore("test", "-opt", str(path))
    assert test.returncode == 0, test.stderr
    assert "| **mean** |" in test.stdout and "net_g_latest.safetensors" in test.stdout
    report = tmp_path / "results" / "e2e_sr_x2" / "Set5"  # reports are named after the experiment and scale
    assert "e2e_sr_x2/Set5/index.html" in test.stdout
    rows = {line.split(",")[0]: line.split(",") for line in (report / "metrics.csv").read_text().splitlines()
            if ",mean," in line}
    trained_psnr, bicubic_psnr = float(rows["MSRResNet"][2]), float(rows["Bicubic"][2])
    assert trained_psnr > bicubic_psnr, (trained_psnr, bicubic_psnr)
    assert abs(bicubic_psnr - 33.66) < 0.03  # the bicubic row every SR paper tabulates
    assert (report / "metrics.md").is_file() and (report / "psnr.png").is_file()
    assert sorted(p.name for p in (report / "MSRResNet").iterdir()) == [
        "baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]


def _train_process(path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "restore", "train", "-opt", str(path), "--no-progress", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_weights(tmp_path, write_options):
    options = tiny_sisr_options(tmp_path, train__total_iter=40, train__ema_decay=0.9,
                                train__scheduler={"type": "MultiStepLR", "milestones": [25], "gamma": 0.5},
                                logger__save_checkpoint_freq=10, val__val_freq=20)
    path = write_options(options)
    reference = run_restore("train", "-opt", str(path), "--set", "name=uninterrupted", "--no-progress")
    assert reference.returncode == 0, reference.stderr

    killed = _train_process(path, "--set", "name=killed")
    # Kill on the log line of iteration 25, not after a sleep: past the checkpoint at 20 (so the kill
    # loses iterations) and well before 40 however fast the machine is.
    for line in killed.stdout:
        if "[iter 25/40]" in line:
            break
    else:
        pytest.fail("training ended before it could be killed")
    assert (tmp_path / "experiments" / "killed" / "training_states" / "00000020" / "manifest.json").is_file()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "experiments" / "killed" / "models" / "net_g_40.safetensors").exists()

    resumed = run_restore("train", "-opt", str(path), "--set", "name=killed", "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    for label in ("net_g_40", "net_g_ema_40"):
        a = _weights(tmp_path / "experiments" / "uninterrupted" / "models" / f"{label}.safetensors")
        b = _weights(tmp_path / "experiments" / "killed" / "models" / f"{label}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{label}: {key} differs after kill + resume"


def test_two_processes_train_like_one(tmp_path, write_options):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    options = tiny_sisr_options(tmp_path, train__total_iter=20, datasets__train__batch_size_per_gpu=4)
    path = write_options(options)
    single = run_restore("train", "-opt", str(path), "--set", "name=one", "--no-progress")
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        ["torchrun", "--nproc_per_node", "2", "-m", "restore", "train", "-opt", str(path), "--set", "name=two",
         "--set", "datasets.train.batch_size_per_gpu=2", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert double.returncode == 0, double.stderr[-3000:]
    assert "2 process(es)" in double.stderr
    a = _weights(tmp_path / "experiments" / "one" / "models" / "net_g_20.safetensors")
    b = _weights(tmp_path / "experiments" / "two" / "models" / "net_g_20.safetensors")
    for key in a:  # same batches split over two ranks: equal up to float summation order
        torch.testing.assert_close(a[key], b[key], atol=2e-3, rtol=0)

    def psnr(log: str) -> float:
        line = [x for x in log.splitlines() if "[val Set5 @ 20]" in x][-1]
        return float(line.split("psnr ")[1].split()[0])

    assert abs(psnr(single.stderr) - psnr(double.stderr)) < 0.01


def test_kills_during_a_state_save_and_mid_step_resume_to_the_uninterrupted_weights(tmp_path, write_options):
    """kill -9 while a state is being written (its staging folder exists), then mid-step, then resume."""
    import time

    options = tiny_sisr_options(tmp_path, train__total_iter=40, train__ema_decay=0.9, datasets__val=None,
                                logger__save_checkpoint_freq=5, logger__print_freq=1)
    path = write_options(options)
    reference = run_restore("train", "-opt", str(path), "--set", "name=calm", "--no-progress")
    assert reference.returncode == 0, reference.stderr
    states = tmp_path / "experiments" / "stormy" / "training_states"

    during_save = _train_process(path, "--set", "name=stormy")
    deadline = time.time() + 600
    while not (states.is_dir() and list(states.glob(".tmp-*"))):
        assert during_save.poll() is None and time.time() < deadline, "no state save was caught in progress"
        time.sleep(0.002)
    during_save.send_signal(signal.SIGKILL)
    during_save.wait()

    mid_step = _train_process(path, "--set", "name=stormy", "--auto-resume")
    for line in mid_step.stdout:
        if "[iter 23/40]" in line:
            break
    mid_step.send_signal(signal.SIGKILL)
    mid_step.wait()

    resumed = run_restore("train", "-opt", str(path), "--set", "name=stormy", "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    for label in ("net_g_40", "net_g_ema_40"):
        a = _weights(tmp_path / "experiments" / "calm" / "models" / f"{label}.safetensors")
        b = _weights(tmp_path / "experiments" / "stormy" / "models" / f"{label}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), f"{label} differs after kills and resumes"
