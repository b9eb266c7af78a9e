"""One run owns its experiment folder: a second run of the same name stops and touches nothing, a
failing run never archives the good one, --resume without a state is an error, names stay names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restore.cli import main
from tests.conftest import REPO, run_restore, tiny_sisr_options


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _start(path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "restore", "train", "-opt", str(path), "--no-progress", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


def _wait_for(process: subprocess.Popen, text: str) -> str:
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    pytest.fail(f"the run ended before printing {text!r}:\n{''.join(seen)[-3000:]}")


@pytest.mark.slow
def test_a_second_run_with_the_same_name_stops_at_once_and_touches_nothing(tmp_path, write_options):
    options = tiny_sisr_options(tmp_path, name="conc", train__total_iter=400, logger__print_freq=10,
                                logger__save_checkpoint_freq=20, val__val_freq=1000, datasets__val=None)
    path = write_options(options)
    first = _start(path, "--set", "manual_seed=1")
    try:
        _wait_for(first, "[iter 20/400]")
        folder = tmp_path / "experiments" / "conc"
        before = _snapshot(folder / "models"), (folder / "options.yml").read_text()
        second = run_restore("train", "-opt", str(path), "--set", "manual_seed=2", "--no-progress", timeout=300)
        assert second.returncode == 2, second.stderr
        message = " ".join(second.stderr.split())  # the CLI wraps at 100 columns
        assert "another run is using this experiment" in message and f"pid {first.pid}" in message
        assert "Traceback" not in second.stderr
        # The second run wrote nothing: no archive, the first run's options and weights are its own.
        assert [p.name for p in folder.parent.iterdir() if not p.name.startswith(".")] == ["conc"]
        assert (folder / "options.yml").read_text() == before[1] and "manual_seed: 1" in before[1]
        assert set(before[0]) <= set(_snapshot(folder / "models"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # A lock left by a killed run is not in the way: the kernel released it with the process.
    resumed = run_restore("train", "-opt", str(path), "--set", "manual_seed=1", "--set", "train.total_iter=40",
                          "--resume", "--no-progress", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "took over the lock of an earlier run that has ended" in resumed.stderr
    assert "resumed from" in resumed.stderr


def test_the_lock_is_exclusive_between_processes_and_released_on_exit(tmp_path):
    from restore.experiment import ExperimentBusy, ExperimentLock

    folder = tmp_path / "experiments" / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from restore.experiment import "
         "ExperimentLock; lock = ExperimentLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); "
         "time.sleep(60)", str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExperimentBusy, match=f"pid {holder.pid}"):
            ExperimentLock(folder).acquire()
    finally:
        holder.kill()
        holder.wait()
    with ExperimentLock(folder) as lock:  # the dead holder's lock is gone with its process
        assert lock.previous_holder["pid"] == holder.pid
    assert not lock.path.exists()


def test_a_failing_run_does_not_archive_the_good_one(tmp_path, write_options, capsys):
    options = tiny_sisr_options(tmp_path, name="good", train__total_iter=10, val__val_freq=100,
                                logger__save_checkpoint_freq=10, datasets__val=None)
    path = write_options(options)
    assert main(["train", "-opt", str(path), "--no-progress"]) == 0
    folder = tmp_path / "experiments" / "good"
    before = _snapshot(folder)

    assert main(["train", "-opt", str(path), "--no-progress", "--set", "datasets.train.lq_size=0"]) == 2
    assert "datasets.train" in " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert _snapshot(folder) == before
    assert [p.name for p in folder.parent.iterdir() if not p.name.startswith(".")] == ["good"]


def test_resume_without_a_state_is_an_error_and_auto_resume_starts_afresh(tmp_path, write_options, capsys):
    options = tiny_sisr_options(tmp_path, name="fresh", train__total_iter=4, datasets__val=None)
    path = write_options(options)
    assert main(["train", "-opt", str(path), "--no-progress", "--resume"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert "no training state to resume" in err and "--auto-resume" in err
    assert not (tmp_path / "experiments" / "fresh").exists()

    assert main(["train", "-opt", str(path), "--no-progress", "--auto-resume"]) == 0
    assert (tmp_path / "experiments" / "fresh" / "training_states" / "00000004").is_dir()
    capsys.readouterr()
    assert main(["train", "-opt", str(path), "--no-progress", "--auto-resume",
                 "--set", "train.total_iter=6"]) == 0
    log = "".join(p.read_text() for p in (tmp_path / "experiments" / "fresh" / "logs").glob("*.log"))
    assert "resumed from" in log and "at iteration 4" in log


def test_a_new_run_says_where_the_earlier_one_went(tmp_path, write_options, capsys):
    options = tiny_sisr_options(tmp_path, name="twice", train__total_iter=2, datasets__val=None)
    path = write_options(options)
    assert main(["train", "-opt", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "-opt", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    archived = [p for p in (tmp_path / "experiments").iterdir() if p.name.startswith("twice_archived_")]
    assert len(archived) == 1 and f"moved to {archived[0]}" in out


@pytest.mark.parametrize("name", ["''", "..", ".", "a/../../outside", "../escaped", "x/y"])
def test_an_experiment_name_is_one_plain_folder_name(tmp_path, write_options, capsys, name):
    options = tiny_sisr_options(tmp_path, train__total_iter=2, datasets__val=None)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "keep.txt").write_text("an earlier run's file")
    path = write_options(options)
    assert main(["train", "-opt", str(path), "--no-progress", "--set", f"name={name}"]) == 2
    assert "name:" in " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments", "options.yml"]
    assert sorted(p.name for p in (tmp_path / "experiments").iterdir()) == ["keep.txt"]


def test_a_dry_run_checks_the_network_serves_the_task_scale(tmp_path, write_options, capsys):
    options = tiny_sisr_options(tmp_path, network_g={"type": "DRRN_PS", "num_features": 16, "num_units": 2,
                                                     "scales": [2]}, task={"type": "sisr", "scale": 3},
                                datasets__val=None, datasets__train__gt_size=48)
    path = write_options(options)
    started = time.time()
    assert main(["train", "-opt", str(path), "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert "scale 3" in err and "network_g" in err
    assert not (tmp_path / "experiments").exists() and time.time() - started < 120
