"""Weights files and training states: atomic, complete, and never executing code when loaded."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from restore.build import read_state_dict
from restore.checkpoint import load_weights, safe_torch_load, save_weights
from restore.errors import CheckpointError
from restore.training_state import is_complete, latest_complete_state


def test_weights_round_trip_with_network_and_task_metadata(tmp_path):
    state = {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.zeros(4)}
    path = save_weights(tmp_path / "w.safetensors", state, network={"type": "X", "width": 4},
                        task={"type": "sisr", "scale": 2})
    loaded, meta = load_weights(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert meta["network"] == {"type": "X", "width": 4} and meta["task"] == {"type": "sisr", "scale": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left behind


class _RunsCode:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": _RunsCode(str(marker))}, path)
    for allow_numpy in (False, True):
        with pytest.raises(CheckpointError, match="refused to load"):
            safe_torch_load(path, allow_numpy=allow_numpy)
    with pytest.raises(CheckpointError):
        read_state_dict(path)
    assert not marker.exists()


def test_numpy_scalars_are_allowed_only_when_asked(tmp_path):
    path = tmp_path / "with_numpy.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "records": {"psnr": [np.float64(37.7)]}}, path)
    with pytest.raises(CheckpointError, match="numpy"):
        safe_torch_load(path)
    obj = safe_torch_load(path, allow_numpy=True)
    assert obj["records"]["psnr"][0] == pytest.approx(37.7)


def test_foreign_pth_with_wrapper_and_prefix_is_read_safely(tmp_path):
    path = tmp_path / "basicsr_style.pth"
    torch.save({"params": {"module.body.weight": torch.ones(3)}}, path)
    state, _ = read_state_dict(path)
    assert list(state) == ["body.weight"]


def test_a_truncated_safetensors_file_is_reported(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", {"w": torch.randn(100)})
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_weights(path)


def test_pth_given_where_safetensors_is_expected_points_to_convert(tmp_path):
    (tmp_path / "model.pth").touch()
    with pytest.raises(CheckpointError, match="restore convert"):
        load_weights(tmp_path / "model.pth")


def _fake_state(root, iteration: int, *, truncate: str | None = None, manifest: bool = True):
    state = root / f"{iteration:08d}"
    state.mkdir(parents=True)
    files = {"model.safetensors": b"x" * 100, "trainer.json": b"{}"}
    for name, data in files.items():
        (state / name).write_bytes(data)
    if manifest:
        (state / "manifest.json").write_text(json.dumps({"files": {k: len(v) for k, v in files.items()}}))
    if truncate:
        (state / truncate).write_bytes(b"x")
    return state


def test_latest_complete_state_skips_incomplete_and_truncated_ones(tmp_path):
    _fake_state(tmp_path, 10)
    _fake_state(tmp_path, 20, truncate="model.safetensors")
    _fake_state(tmp_path, 30, manifest=False)
    (tmp_path / ".tmp-00000040").mkdir()
    assert is_complete(tmp_path / "00000010") and not is_complete(tmp_path / "00000020")
    assert latest_complete_state(tmp_path) == tmp_path / "00000010"


def test_accelerate_state_files_load_weights_only(tmp_path):
    """The pickled files Accelerate writes (optimizer, RNG) hold only tensors/containers/numpy."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net, optimizer = accelerator.prepare(net, optimizer)
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    accelerator.save_state(str(tmp_path))
    for name in ("optimizer.bin", "random_states_0.pkl"):
        assert zipfile.is_zipfile(tmp_path / name) or (tmp_path / name).read_bytes()[:2] == pickle.PROTO + b"\x04"
    assert safe_torch_load(tmp_path / "optimizer.bin")["state"]
    assert "torch_manual_seed" in safe_torch_load(tmp_path / "random_states_0.pkl", allow_numpy=True)


class _GainNet(torch.nn.Module):
    def __init__(self, in_chans: int = 3, gain: float = 1.0, mode: str = "plain") -> None:
        super().__init__()
        self.conv, self.gain, self.mode = torch.nn.Conv2d(in_chans, in_chans, 1), gain, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.gain


def test_weights_load_into_the_network_they_were_trained_with_after_a_default_changes(tmp_path):
    from restore.api import build_network, register_arch

    register_arch(_GainNet, name="GainProbeForRecordedDefaults")
    options = {"type": "GainProbeForRecordedDefaults", "mode": "plain"}
    net = build_network(options, in_chans=3)
    path = save_weights(tmp_path / "w.safetensors", net.state_dict(), network=options)
    original = _GainNet.__init__.__defaults__
    _GainNet.__init__.__defaults__ = (3, 2.0, "plain")  # a later release changes the default gain
    try:
        _, meta = load_weights(path)
        assert meta["network"] == {"type": "GainProbeForRecordedDefaults", "mode": "plain", "gain": 1.0}
        assert build_network(meta["network"], in_chans=3).gain == 1.0
        assert build_network(options, in_chans=3).gain == 2.0  # what loading without the record would build
    finally:
        _GainNet.__init__.__defaults__ = original
