"""What a run loads is what was written: checksummed training states, refused payloads and foreign
shapes, no NaN weights, and a full disk that loses nothing."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from restore.checkpoint import save_weights
from restore.cli import main
from restore.training_state import verification_problem
from tests.conftest import REPO, run_restore, tiny_sisr_options


def _options(tmp_path, name, **overrides):
    return tiny_sisr_options(tmp_path, name=name, datasets__val=None, logger__save_checkpoint_freq=10,
                             logger__print_freq=10, train__ema_decay=0.9, **overrides)


def _state(tmp_path, name, iteration):
    return tmp_path / "experiments" / name / "training_states" / f"{iteration:08d}"


def _overwrite_middle(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes((b + 1) % 256 for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["optimizer.bin", "model.safetensors"])
def test_a_damaged_state_is_passed_over_for_the_newest_that_verifies(tmp_path, write_options, capsys, damaged):
    path = write_options(_options(tmp_path, "damaged", train__total_iter=30))
    assert main(["train", "-opt", str(path), "--no-progress"]) == 0
    reference = write_options(_options(tmp_path, "reference", train__total_iter=40), "reference.yml")
    assert main(["train", "-opt", str(reference), "--no-progress"]) == 0

    newest = _state(tmp_path, "damaged", 30)
    size = (newest / damaged).stat().st_size
    _overwrite_middle(newest / damaged)  # same size: a size check alone would accept it
    assert (newest / damaged).stat().st_size == size and "checksum" in verification_problem(newest)

    capsys.readouterr()
    assert main(["train", "-opt", str(path), "--no-progress", "--resume", "--set", "train.total_iter=40"]) == 0
    log = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert "training state 00000030 does not verify" in log and f"{damaged} does not match its checksum" in log
    assert "resumed from" in log and "00000020 at iteration 20" in log
    # The damaged state is kept aside for inspection; the resumed run wrote a good 30 of its own.
    assert list(newest.parent.glob("00000030.unverified-*")) and verification_problem(newest) is None
    # Resuming from 20 gives exactly the uninterrupted run's weights.
    for label in ("net_g_40", "net_g_ema_40"):
        a = load_file(str(tmp_path / "experiments" / "reference" / "models" / f"{label}.safetensors"))
        b = load_file(str(tmp_path / "experiments" / "damaged" / "models" / f"{label}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), label


def test_a_pickle_payload_in_a_state_is_refused_naming_file_and_global(tmp_path, write_options, capsys):
    path = write_options(_options(tmp_path, "payload", train__total_iter=10))
    assert main(["train", "-opt", str(path), "--no-progress"]) == 0
    state = _state(tmp_path, "payload", 10)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("optimizer.bin", "scheduler.pt"):
        original = (state / name).read_bytes()
        torch.save({"state": Payload()}, state / name)
        # An attacker who rewrites the file can rewrite the manifest too: the payload must still not run.
        manifest = json.loads((state / "manifest.json").read_text())
        manifest["files"][name] = {"size": (state / name).stat().st_size}
        (state / "manifest.json").write_text(json.dumps(manifest))
        capsys.readouterr()
        assert main(["train", "-opt", str(path), "--no-progress", "--resume", "--set", "train.total_iter=20"]) == 2
        err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
        assert str(state) in err and "system" in err and "refuses" in err, err
        assert "weights_only" not in err and "Traceback" not in err
        assert not marker.exists()
        (state / name).write_bytes(original)
        manifest["files"][name] = {"size": len(original)}
        (state / "manifest.json").write_text(json.dumps(manifest))


def test_the_refusal_of_a_foreign_pickle_names_the_global_not_torch_advice(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"params": Payload()}, tmp_path / "evil.pth")
    assert main(["convert", str(tmp_path / "evil.pth"), str(tmp_path / "out.safetensors")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert "evil.pth" in err and "system" in err and "weights_only" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_resuming_a_state_of_another_network_width_is_refused_before_anything_changes(tmp_path, write_options,
                                                                                     capsys):
    path = write_options(_options(tmp_path, "width", train__total_iter=10))
    assert main(["train", "-opt", str(path), "--no-progress"]) == 0
    folder = tmp_path / "experiments" / "width"
    before = sorted(str(p) for p in folder.rglob("*"))
    capsys.readouterr()
    assert main(["train", "-opt", str(path), "--no-progress", "--resume", "--set", "network_g.num_feat=8",
                 "--set", "train.total_iter=20"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert "written by another network" in err and "different shapes" in err
    assert sorted(str(p) for p in folder.rglob("*")) == before


@pytest.fixture
def nan_weights(tmp_path) -> Path:
    net = torch.nn.Conv2d(3, 3, 3)
    state = net.state_dict()
    state["weight"][0, 0, 0, 0] = float("nan")
    state["bias"][1] = float("inf")
    return save_weights(tmp_path / "nan.safetensors", state)


def test_weights_holding_nan_are_refused_on_load_naming_the_tensors(nan_weights, tmp_path, write_options, capsys):
    options = tiny_sisr_options(tmp_path, datasets__val=None, path__pretrain_network_g=str(nan_weights))
    assert main(["train", "-opt", str(write_options(options)), "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
    assert "nan.safetensors" in err and "NaN or infinite" in err and "weight" in err and "bias" in err
    assert "learning rate" not in err


def test_metadata_that_is_not_an_options_mapping_is_refused(tmp_path, capsys):
    for name, value in (("not_json", "{oops"), ("a_list", json.dumps([1, 2]))):
        path = save_weights(tmp_path / f"{name}.safetensors", {"w": torch.zeros(2)},
                            extra={"restore.network": value})
        assert main(["infer", "--weights", str(path), str(REPO / "datasets/Set5/LR_bicubic/X2/birdx2.png"),
                     str(tmp_path / f"{name}_out")]) == 2
        err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
        assert f"{name}.safetensors" in err and "not a JSON mapping" in err
        assert not (tmp_path / f"{name}_out").exists()


# -- a full disk during a state save ---------------------------------------------------------------


def _mount_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_out_of_disk_during_a_state_save_keeps_the_previous_state_and_resumes(tmp_path, write_options):
    """A size-limited filesystem made by the test (tmpfs, as root), or else a per-file size limit."""
    options = _options(tmp_path, "full", train__total_iter=20, logger__keep_checkpoints=5,
                       logger__use_tb_logger=False)
    sizing = write_options(options, "sizing.yml")
    assert run_restore("train", "-opt", str(sizing), "--no-progress").returncode == 0
    state = _state(tmp_path, "full", 20)
    one_state = _tree_bytes(state)
    optimizer_bytes = (state / "optimizer.bin").stat().st_size
    weights = _tree_bytes(tmp_path / "experiments" / "full" / "models") // 4  # per file (net_g/_ema at 10, 20)
    shutil.rmtree(tmp_path / "experiments")

    disk = tmp_path / "disk"
    path = write_options({**options, "path": {**options["path"], "experiments_root": str(disk)}}, "limited.yml")
    # Room for the first checkpoint (two weights files, their latest copies, a state) and half of a second state.
    mounted = _mount_tmpfs(disk, 4096 * 40 + 4 * weights + one_state + one_state // 2)
    try:
        if mounted:
            failed = run_restore("train", "-opt", str(path), "--no-progress")
        else:  # no mount allowed here: every optimizer.bin is too large, so the first save fails
            failed = _run_with_file_size_limit(path, (weights + optimizer_bytes) // 2)
        assert failed.returncode == 2, failed.stderr[-2000:]
        message = " ".join(failed.stderr.split())
        assert "the disk is full" in message and "partial state was removed" in message, message[-1500:]
        assert "Traceback" not in message
        states = disk / "full" / "training_states"
        kept = ["00000010"] if mounted else []
        assert sorted(p.name for p in states.iterdir()) == kept  # no .tmp-* left behind
        if mounted:
            assert verification_problem(states / "00000010") is None
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            resumed = run_restore("train", "-opt", str(path), "--no-progress", "--resume")
            assert resumed.returncode == 0, resumed.stderr[-2000:]
            assert "resumed from" in resumed.stderr and (disk / "full" / "models" / "net_g_20.safetensors").is_file()
    finally:
        if mounted:
            _umount(disk)


def _run_with_file_size_limit(path: Path, limit: int) -> subprocess.CompletedProcess:
    def limit_file_size():
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "restore", "train", "-opt", str(path), "--no-progress"], cwd=REPO,
                          capture_output=True, text=True, timeout=900, preexec_fn=limit_file_size,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
