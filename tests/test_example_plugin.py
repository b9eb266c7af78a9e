"""The example plugin `examples/restore-templates` works as a third-party package: installed into a
temporary target it is listed by `restore plugins`, trains from its YAML file, and exports to a
plain network that loads with `sharing: none` without the plugin."""

from __future__ import annotations

import pytest
import torch

from restore.api import count_parameters, load_model
from tests.conftest import DATASETS, REPO
from tests.plugin_helpers import pip_install, run_with

EXAMPLE = REPO / "examples" / "restore-templates"
OPTIONS = EXAMPLE / "options" / "drrn_templates_quick_x2.yml"


@pytest.mark.slow
def test_installed_example_plugin_is_listed_trains_from_yaml_and_exports(tmp_path):
    target = pip_install(EXAMPLE, tmp_path / "target", tmp_path)

    listed = run_with(target, "plugins")
    assert listed.returncode == 0, listed.stderr
    assert any("templates" in ln and "Template mixing" in ln for ln in listed.stdout.splitlines()), listed.stdout

    run = tmp_path / "experiments" / "drrn_templates_quick_x2"
    trained = run_with(target, "train", "-opt", str(OPTIONS), "--no-progress",
                       "--set", f"path.experiments_root={tmp_path / 'experiments'}",
                       "--set", "train.total_iter=4", "--set", "train.scheduler.milestones=[2]",
                       "--set", "datasets.train.batch_size_per_gpu=2",
                       "--set", f"datasets.val.dataroot_gt={DATASETS / 'Set5/HR'}",
                       "--set", f"datasets.val.dataroot_lq={DATASETS / 'Set5/LR_bicubic/X2'}",
                       "--set", "val.val_freq=4", "--set", "logger.save_checkpoint_freq=4",
                       "--set", "logger.print_freq=2", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    weights = run / "models" / "net_g_latest.safetensors"
    assert weights.is_file()

    out = tmp_path / "plain.safetensors"
    exported = run_with(target, "export", "--weights", str(weights), "--materialize", str(out))
    assert exported.returncode == 0, exported.stderr
    # bank 4 x 32x32x3x3 + 6 layers x 4 coefficients + entry (1->32) and exit (32->1) convs
    assert "55,905 parameters (shared network: 37,497)" in exported.stdout

    net, task = load_model(out)  # this process has no `templates`: the export stands alone
    assert net.sharing.describe() == {"type": "none"} and count_parameters(net) == 55_905 and task.scale == 2
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.isfinite(net.eval()(x, scale=2)).all()


@pytest.mark.slow
def test_compose_gives_ups_the_unified_projection_and_a_third_party_scheme_and_exports(tmp_path):
    """The issue's own example: UPS-S with the paper's projection U and its 3x3 convs as template mixes
    from the installed example plugin, trained from YAML, exported, reloaded without the plugin."""
    target = pip_install(EXAMPLE, tmp_path / "target", tmp_path)
    rules = ('[{slots: projection, scheme: unified_projection}, '
             '{slots: "*.feature", scheme: {type: templates, num_templates: 4}}]')
    trained = run_with(target, "train", "-opt", str(REPO / "options" / "quick_ups_s_compose_x2.yml"),
                       "--no-progress", "--set", f"path.experiments_root={tmp_path / 'experiments'}",
                       "--set", f"network_g.sharing.rules={rules}", "--set", "name=ups_templates",
                       "--set", "train.total_iter=2", "--set", "datasets.train.batch_size_per_gpu=2",
                       "--set", "datasets.val=~", "--set", "logger.save_checkpoint_freq=2",
                       "--set", "logger.print_freq=1", cwd=REPO)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "templates" in trained.stderr and "unified_projection" in trained.stderr  # the log's describe()
    weights = tmp_path / "experiments" / "ups_templates" / "models" / "net_g_latest.safetensors"

    out = tmp_path / "plain.safetensors"
    exported = run_with(target, "export", "--weights", str(weights), "--materialize", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]
    net, _ = load_model(out)  # no plugin in this process
    assert count_parameters(net) == 484_176  # UPS-S with sharing: none (a projection per attention layer)
    with torch.no_grad():
        assert torch.isfinite(net.eval()(torch.rand(1, 3, 16, 16))).all()
