"""Trainer options: gradient accumulation, mixed precision, warm-up, gradient clipping, divergence, and the
run folder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from restore.options import load_options
from restore.trainer import TrainingDiverged, train
from tests.conftest import tiny_sisr_options


def _train(tmp_path, write_options, name, **overrides):
    options = tiny_sisr_options(tmp_path, name=name, **overrides)
    result = train(load_options(write_options(options, f"{name}.yml")), progress=False)
    return result, load_file(str(result.experiment_dir / "models" / f"net_g_{result.iteration}.safetensors"))


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path, write_options):
    # SGD, not Adam: Adam would hide a gradient that is off by the accumulation factor
    common = {"train__total_iter": 6, "val__val_freq": 100, "logger__save_checkpoint_freq": 100,
              "datasets__val": None, "train__optim_g": {"type": "SGD", "lr": 0.05}}
    _, full = _train(tmp_path, write_options, "full", datasets__train__batch_size_per_gpu=4, **common)
    _, halves = _train(tmp_path, write_options, "halves", datasets__train__batch_size_per_gpu=2,
                       train__gradient_accumulation_steps=2, **common)
    for key in full:
        torch.testing.assert_close(full[key], halves[key], atol=1e-6, rtol=0)  # a wrong scale differs by ~1e-2


def test_bf16_mixed_precision_trains_on_cpu(tmp_path, write_options):
    result, weights = _train(tmp_path, write_options, "bf16", train__total_iter=4, train__mixed_precision="bf16",
                             val__val_freq=4)
    assert result.iteration == 4 and all(torch.isfinite(w).all() for w in weights.values())
    assert result.last_validation["Set5/psnr"] > 20


def test_warmup_ramps_the_learning_rate(tmp_path, write_options):
    result, _ = _train(tmp_path, write_options, "warm", train__total_iter=4, train__warmup_iter=4,
                       logger__print_freq=1, datasets__val=None)
    log = next((result.experiment_dir / "logs").glob("train_*.log")).read_text()
    lrs = [float(line.split("lr ")[1].split()[0]) for line in log.splitlines() if "[iter " in line]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])


def test_diverging_loss_stops_with_advice(tmp_path, write_options):
    with pytest.raises(TrainingDiverged,
                       match=r"the loss became (nan|inf) between iterations \d+ and \d+ .* Lower train.optim_g.lr"):
        _train(tmp_path, write_options, "boom", train__optim_g={"type": "SGD", "lr": 1e30}, train__total_iter=50,
               datasets__val=None)


def test_an_earlier_run_of_the_same_name_is_archived_not_overwritten(tmp_path, write_options):
    first, _ = _train(tmp_path, write_options, "again", train__total_iter=2, datasets__val=None)
    (first.experiment_dir / "notes.txt").write_text("keep me")
    _train(tmp_path, write_options, "again", train__total_iter=2, datasets__val=None)
    archived = [p for p in first.experiment_dir.parent.iterdir() if p.name.startswith("again_archived_")]
    assert len(archived) == 1 and (archived[0] / "notes.txt").read_text() == "keep me"


def test_weights_record_their_experiment_so_a_moved_file_keeps_its_report_name(tmp_path, write_options):
    import shutil

    from restore.tester import experiment_name

    result, _ = _train(tmp_path, write_options, "named_run", train__total_iter=2, datasets__val=None)
    moved = tmp_path / "elsewhere" / "net_g_ema_latest.safetensors"
    moved.parent.mkdir()
    shutil.copyfile(result.experiment_dir / "models" / "net_g_latest.safetensors", moved)
    assert experiment_name(str(moved)) == "named_run"  # not the file's stem


def test_grad_clip_bounds_the_update_by_the_clipped_norm(tmp_path, write_options):
    def one_sgd_step(name, **overrides):
        return _train(tmp_path, write_options, name, train__total_iter=1, datasets__val=None,
                      train__optim_g={"type": "SGD", "lr": overrides.pop("lr", 0.1)}, **overrides)[1]

    start = one_sgd_step("start", lr=0.0)  # same seed, no step: the initial weights

    def update_norm(weights):
        return torch.sqrt(sum(((weights[k] - start[k]) ** 2).sum() for k in start)).item()

    assert update_norm(one_sgd_step("clipped", train__grad_clip=1e-3)) == pytest.approx(0.1 * 1e-3, rel=1e-3)
    assert update_norm(one_sgd_step("free")) > 10 * 0.1 * 1e-3


def test_steps_between_two_log_lines_read_nothing_from_the_device(tmp_path, write_options, monkeypatch):
    """The loss is summed on the device: the only Tensor.item() our code calls is the one read that
    feeds each log line (on CUDA every .item() would stall the stream)."""
    import logging
    import sys

    from tests.conftest import REPO

    ours = (str(REPO / "restore"), str(REPO / "plugins"))
    events: list[str] = []
    original_item, original_info = torch.Tensor.item, logging.Logger.info

    def recording_item(self):
        if sys._getframe(1).f_code.co_filename.startswith(ours):
            events.append("item")
        return original_item(self)

    def recording_info(self, message, *args, **kwargs):
        if "[iter " in str(message):
            events.append("log")
        return original_info(self, message, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "item", recording_item)
    monkeypatch.setattr(logging.Logger, "info", recording_info)
    options = tiny_sisr_options(tmp_path, name="nosync", datasets__val=None, train__total_iter=20,
                                train__ema_decay=0.9, logger__print_freq=5, logger__save_checkpoint_freq=20)
    train(load_options(write_options(options)), progress=False)
    assert events == ["item", "log"] * 4


@pytest.mark.slow
def test_compile_and_channels_last_train_like_eager_and_keep_plain_state_keys(tmp_path, write_options):
    """train.compile compiles the network in place (states and weights keep their keys, so a compiled run
    resumes uncompiled); channels_last changes the layout, not the result."""
    import os
    import subprocess
    import sys

    from safetensors import safe_open

    from tests.conftest import REPO

    common = {"datasets__val": None, "train__total_iter": 6, "logger__save_checkpoint_freq": 6,
              "train__channels_last": False}
    _, eager_weights = _train(tmp_path, write_options, "eager", **common)
    nhwc, nhwc_weights = _train(tmp_path, write_options, "nhwc", **{**common, "train__channels_last": None})
    log = next((nhwc.experiment_dir / "logs").glob("train_*.log")).read_text()
    assert "channels-last tensors (MSRResNet declares it faster)" in log  # the arch's own preference
    for key in eager_weights:
        torch.testing.assert_close(eager_weights[key], nhwc_weights[key], atol=1e-5, rtol=1e-4)

    path = write_options(tiny_sisr_options(tmp_path, name="compiled", train__compile=True, **common), "c.yml")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "PYTHONUNBUFFERED": "1"}
    compiled = subprocess.run([sys.executable, "-m", "restore", "train", "-opt", str(path), "--no-progress"],
                              cwd=REPO, capture_output=True, text=True, timeout=1200, env=env)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert "the network runs through torch.compile" in compiled.stderr
    weights = load_file(str(tmp_path / "experiments" / "compiled" / "models" / "net_g_6.safetensors"))
    for key in eager_weights:
        torch.testing.assert_close(eager_weights[key], weights[key], atol=1e-4, rtol=1e-3)
    state = tmp_path / "experiments" / "compiled" / "training_states" / "00000006" / "model.safetensors"
    with safe_open(state, framework="pt") as f:
        assert set(f.keys()) == set(eager_weights)

    # Where torch.compile cannot work (here: no C++ compiler), the run says why and trains eagerly.
    path = write_options(tiny_sisr_options(tmp_path, name="fallback", train__compile=True, **common), "f.yml")
    fallback = subprocess.run([sys.executable, "-m", "restore", "train", "-opt", str(path), "--no-progress"],
                              cwd=REPO, capture_output=True, text=True, timeout=1200,
                              env={**env, "CXX": str(tmp_path / "no-such-compiler"),
                                   "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-empty")})
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert "torch.compile could not compile MSRResNet" in fallback.stderr and "compiler" in fallback.stderr
    weights = load_file(str(tmp_path / "experiments" / "fallback" / "models" / "net_g_6.safetensors"))
    assert all(torch.equal(eager_weights[k], weights[k]) for k in eager_weights)
