"""`restore sweep`: grids become named cells, every cell is validated before anything runs, each
cell trains and tests as its own run, and an interrupted sweep finishes without redoing work."""

from __future__ import annotations

import csv
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from restore.errors import OptionError
from restore.sweep.grid import check_cells, load_sweep
from restore.sweep.report import pareto_front
from tests.conftest import REPO, run_restore, tiny_sisr_options


def _sweep_file(tmp_path: Path, sweep: dict, **overrides) -> Path:
    """A tiny x2 SR option file (MSRResNet, bundled photos, Set5) with a `sweep:` block."""
    options = tiny_sisr_options(tmp_path, name="tiny", **overrides)
    options["sweep"] = {"output_size": "128x128", "latency_size": 16, "latency_rounds": 1, **sweep}
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return path


def test_cells_are_the_product_of_the_axes_named_from_the_base_name_and_values(tmp_path):
    path = _sweep_file(tmp_path, {"grid": {"network_g.num_feat": [8, 16]}})
    sweep = load_sweep(path, ["manual_seed=[0, 1, 2]"])
    assert [c.name for c in sweep.cells] == [
        f"tiny__num_feat-{f}__manual_seed-{s}" for f in (8, 16) for s in (0, 1, 2)]
    cell = sweep.cells[4]
    assert cell.values == {"network_g.num_feat": 16, "manual_seed": 1}
    assert cell.options["network_g"] == {"type": "MSRResNet", "num_feat": 16, "num_block": 2}
    assert cell.options["name"] == cell.name and cell.options["manual_seed"] == 1
    assert cell.configuration == "num_feat-16" and cell.seed == 1
    assert len(check_cells(sweep)) == 6


def test_a_mapping_value_sets_several_keys_and_tilde_removes_one_the_base_sets(tmp_path):
    path = _sweep_file(tmp_path, {"grid": {"network_g": [{"type": "EDSR", "num_block": 1}, {"num_block": None}]}})
    edsr, default_blocks = load_sweep(path).cells
    assert edsr.options["network_g"]["type"] == "EDSR" and edsr.options["network_g"]["num_block"] == 1
    assert default_blocks.options["network_g"] == {"type": "MSRResNet", "num_feat": 16}
    assert default_blocks.values == {"network_g.num_block": None}
    assert default_blocks.name == "tiny"  # removed keys are not part of the name


def test_a_list_of_grids_is_their_union_and_a_cell_in_two_of_them_runs_once(tmp_path):
    path = _sweep_file(tmp_path, {"grid": [{"network_g.num_feat": [8, 16], "manual_seed": [0]},
                                           {"network_g.num_feat": [16], "manual_seed": [0, 1]}]})
    assert [c.name for c in load_sweep(path).cells] == [
        "tiny__num_feat-8__manual_seed-0", "tiny__num_feat-16__manual_seed-0", "tiny__num_feat-16__manual_seed-1"]


def test_values_are_made_safe_as_folder_names_and_clashes_are_refused(tmp_path):
    path = _sweep_file(tmp_path, {})
    (cell,) = load_sweep(path, ["network_g.note=[../../outside]"]).cells
    assert cell.name == "tiny__note-.._.._outside" and "/" not in cell.name
    with pytest.raises(OptionError, match="get the same experiment name 'tiny__note-a_b'"):
        load_sweep(path, ["network_g.note=[a/b, a b]"])


def test_a_bad_grid_value_names_the_cell_and_the_key_before_anything_is_written(tmp_path):
    path = _sweep_file(tmp_path, {"grid": {"train.total_iter": [10, 0], "network_g.num_fet": [8]}})
    result = run_restore("sweep", "-opt", str(path))
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "sweep cell tiny__total_iter-10__num_fet-8: network_g.num_fet: unknown option" in message
    assert "Did you mean 'num_feat'?" in message
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "results").exists()


def test_a_typo_in_the_sweep_block_and_a_grid_that_is_not_a_list_are_option_errors(tmp_path):
    with pytest.raises(OptionError, match=r"sweep\.grdi: unknown key\. Did you mean 'grid'\?"):
        load_sweep(_sweep_file(tmp_path, {"grdi": {}}))
    with pytest.raises(OptionError, match=r"--grid manual_seed: expected a non-empty list"):
        load_sweep(_sweep_file(tmp_path, {}), ["manual_seed=3"])
    with pytest.raises(OptionError, match=r"sweep\.output_size"):
        load_sweep(_sweep_file(tmp_path, {"output_size": "1280"}))


def test_pareto_front_keeps_the_points_no_other_point_beats_on_both_axes():
    points = [(10, 30.0), (20, 31.0), (20, 30.5), (30, 30.9), (40, 32.0), (10, 29.0)]
    assert pareto_front(points) == [True, True, False, False, True, False]
    # lower is better (e.g. RMSE): the cheapest point with the lowest error wins
    assert pareto_front([(10, 3.0), (20, 2.0), (30, 2.5)], higher_is_better=False) == [True, True, False]


@pytest.mark.slow
def test_quick_grid_writes_its_csv_table_and_plots(tmp_path):
    roots = [f"path.experiments_root={tmp_path / 'experiments'}", f"path.results_root={tmp_path / 'results'}"]
    # The shipped grid (four networks) with one seed and 5 iterations instead of two seeds and 100,
    # two cells training at a time.
    result = run_restore("sweep", "-opt", "options/sweep_quick.yml", "--grid", "manual_seed=[0]", "--jobs", "2",
                         "--set", "train.total_iter=5", "--set", "sweep.output_size=320x180",
                         *(arg for r in roots for arg in ("--set", r)), "--no-progress")
    assert result.returncode == 0, result.stderr
    report = tmp_path / "results" / "sweep_quick"
    with open(report / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["manual_seed"] for r in rows} == {"0"}
    assert {"params", "flops", "latency_ms", "iterations", "Set5/psnr", "Set5/ssim", "network_g.type"} <= set(rows[0])
    assert {r["iterations"] for r in rows} == {"5"}
    flops = [int(r["flops"]) for r in rows]  # the same convs; PS adds the few MACs that build its kernels
    assert max(flops) / min(flops) < 1.001
    assert all(float(r["train_seconds"]) > 0 and float(r["latency_ms"]) > 0 for r in rows)
    params = {r["configuration"]: int(r["params"]) for r in rows}
    assert params["type-DRRN"] < params["type-DRRN_PS"] < params["type-DRRN__sharing-none"]
    assert all(15 < float(r["Set5/psnr"]) < 40 for r in rows)
    table = (report / "sweep.md").read_text()
    assert "| type-DRRN_PS__gamma-1_2 |" in table and table in result.stdout
    for plot in ("Set5_psnr_vs_params.png", "Set5_psnr_vs_flops.png"):
        assert (report / plot).read_bytes().startswith(b"\x89PNG")
    # each cell's report is where `restore test` of the cell puts it: results/<experiment>_x<scale>
    assert (tmp_path / "results" / "sweep_quick__type-DRRN__manual_seed-0_x2" / "Set5" / "metrics.csv").is_file()
    spans = [_logged_span(log) for log in (report / "cells").glob("*.log")]
    assert len(spans) == 4 and any(a[0] <= b[1] and b[0] <= a[1] for a, b in itertools.combinations(spans, 2)), spans


def _logged_span(log: Path) -> tuple[str, str]:
    """First and last timestamp of a training log (a new process takes seconds to start, so the spans
    of cells trained one after the other never touch)."""
    stamps = [line[:19] for line in log.read_text().splitlines() if line[:2] == "20" and line[19:20] == " "]
    return stamps[0], stamps[-1]


def _processes_running(fragment: str) -> list[int]:
    """Pids whose command line contains `fragment` (Linux /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and fragment in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to check the training process died")
def test_sigkill_of_the_sweep_then_rerun_keeps_finished_cells_and_resumes_the_interrupted_one(tmp_path):
    path = _sweep_file(tmp_path, {"grid": {"manual_seed": [0, 1]}}, train__total_iter=60,
                       logger__save_checkpoint_freq=10, val__val_freq=60)
    cells = tmp_path / "results" / "tiny" / "cells"
    first, second = "tiny__manual_seed-0", "tiny__manual_seed-1"
    sweep = subprocess.Popen([sys.executable, "-m", "restore", "sweep", "-opt", str(path), "--no-progress"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 600
    # Kill on the second cell's iteration-25 log line: past its checkpoint at 20, well before 60.
    second_log = cells / f"{second}.log"
    while not (second_log.exists() and "[iter 25/60]" in second_log.read_text()):
        assert sweep.poll() is None, "the sweep ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    for _ in range(100):  # the training process dies with the sweep (parent-death signal)
        if not _processes_running(f"{second}.yml"):
            break
        time.sleep(0.1)
    assert not _processes_running(f"{second}.yml"), "the interrupted cell's training outlived the sweep"

    weights = tmp_path / "experiments" / first / "models" / "net_g_latest.safetensors"
    finished = {p: p.stat().st_mtime_ns for p in [cells / f"{first}.json", cells / f"{first}.log", weights]}
    assert not (cells / f"{second}.json").exists()
    listing = run_restore("sweep", "-opt", str(path), "--dry-run")
    assert f"{first}: done" in listing.stdout and f"{second}: resume at iteration 20" in listing.stdout

    rerun = run_restore("sweep", "-opt", str(path), "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # the finished cell was neither trained nor tested
    log = second_log.read_text()
    commands = [line for line in log.splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and not commands[0].endswith("--resume") and commands[1].endswith("--resume")
    assert "resumed from" in log and "[iter 60/60]" in log
    with open(tmp_path / "results" / "tiny" / "sweep.csv", newline="") as f:
        assert [r["cell"] for r in csv.DictReader(f)] == [first, second]

    changed = run_restore("sweep", "-opt", str(path), "--set", "train.total_iter=50")
    assert changed.returncode == 2
    assert f"sweep cell {first} was started with other options (train.total_iter: 60 -> 50)" in " ".join(
        changed.stderr.split())


@pytest.mark.slow
def test_a_launcher_runs_each_cell_as_a_process_group(tmp_path):
    path = _sweep_file(tmp_path, {}, train__total_iter=4, val__val_freq=4, logger__save_checkpoint_freq=4)
    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2"
    result = run_restore("sweep", "-opt", str(path), "--launcher", launcher, "--no-progress")
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "results" / "tiny" / "cells" / "tiny.log").read_text()
    assert "torch.distributed.run --nproc_per_node 2 -m restore train" in log and "2 process(es)" in log


def test_the_paper_scale_grid_is_carn_and_carn_ps_at_three_ratios_with_three_seeds(monkeypatch):
    from restore.api import build_network, count_parameters
    from restore.options import check_registered_blocks, validate

    monkeypatch.chdir(REPO)
    sweep = load_sweep("options/sweep_ps_carn.yml")
    assert len(sweep.cells) == 12 and {c.seed for c in sweep.cells} == {0, 1, 2}
    params = {}
    for cell in sweep.cells:
        check_registered_blocks(validate(cell.options))  # the data (DIV2K, test sets) may be absent here
        net = build_network(cell.options["network_g"], in_chans=3, out_chans=3)
        params[cell.configuration] = count_parameters(net)
    assert params == {"type-CARN": 1_591_963, "gamma-3_9": params["gamma-3_9"], "gamma-6_9": 1_425_571,
                      "gamma-8_9": 1_590_523}  # the paper's 1.59M / 1.43M / 1.59M
    assert params["gamma-3_9"] < params["gamma-6_9"]
    assert sweep.settings.metric == "Urban100_x3/psnr"
