"""``restore test``: score a trained network (and the task's baseline) on test sets.

For each test set it writes ``results/<name>/<set>/``: ``metrics.csv`` and ``metrics.md``
(per image and mean), one bar chart per metric, the restored outputs of each model in data
units (``<model>/``) and, for tasks that draw them, per-image figures (``figures/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from restore.build import build_dataset, build_task, load_pretrained, network_for_task, read_state_dict
from restore.data.catalog import check_paths
from restore.errors import OptionError
from restore.evaluation import EvalResults, evaluate, markdown_table, write_report
from restore.metrics import MetricSet
from restore.options import check_registered_blocks, validate
from restore.schema import DatasetOptions, Options


@dataclass
class TestRun:
    """One evaluated test set: its results and where the report was written."""

    dataset: str
    results: EvalResults
    out_dir: Path
    table: str
    weights: str | None


def options_from_checkpoint(weights: str, dataset: str | None) -> Options:
    """Options for ``restore test --weights W --dataset D`` with no option file: the task and the
    network come from the weights file's metadata."""
    _, meta = read_state_dict(weights)
    if "network" not in meta or "task" not in meta:
        raise OptionError(f"{weights}: the file does not record its network and task; give an option file (-opt).")
    if dataset is None:
        raise OptionError("--dataset: required when no option file is given.")
    return validate({"name": Path(weights).stem, "task": meta["task"], "network_g": meta["network"]},
                    source=weights)


def trained_weights(options: Options) -> str | None:
    """The weights `restore train` left for this option file (EMA first), if it was trained here."""
    models = Path(options.path.experiments_root) / options.name / "models"
    for name in ("net_g_ema_latest.safetensors", "net_g_latest.safetensors"):
        if (models / name).is_file():
            return str(models / name)
    return None


def test_sets(options: Options, dataset: str | None, lq: str | None, filename_tmpl: str,
              scale: int | None, guide: str | None = None) -> dict[str, DatasetOptions]:
    """The test sets to run: the one named on the command line, else ``test_*``, else ``val*``."""
    if dataset is not None:
        folder = Path(dataset)
        generic = folder.name.lower() in ("hr", "gt", "gt_mod", "images", "depth")  # e.g. Set5/HR -> Set5
        block = {"name": folder.parent.name if generic else folder.name, "dataroot_gt": dataset,
                 "filename_tmpl": filename_tmpl}
        if lq is not None:
            block["dataroot_lq"] = lq
        if guide is not None:
            block["dataroot_guide"] = guide
        if scale is not None:
            block["scale"] = scale
        return {"test": DatasetOptions.model_validate(block)}
    sets = options.eval_sets("test") or options.eval_sets("val")
    if not sets:
        raise OptionError("datasets: no test_* or val dataset in the option file; give --dataset FOLDER.")
    if scale is not None:
        sets = {k: v.model_copy(update={"scale": scale}) for k, v in sets.items()}
    return sets


def run_tests(options: Options, *, weights: str | None, models: str, sets: dict[str, DatasetOptions],
              out_root: Path | None = None, save_images: bool = True, device: str | None = None,
              progress: bool = True) -> list[TestRun]:
    """Evaluate `models` (``both``, ``net`` or ``baseline``) on every set; write the reports."""
    check_registered_blocks(options)
    check_paths(sets)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    task = build_task(options.task, options.scale)
    weights = weights or options.path.pretrain_network_g or trained_weights(options)
    if models in ("both", "net") and weights is None:
        if models == "net":
            raise OptionError("no weights: give --weights FILE or path.pretrain_network_g, train this option file "
                              "first, or use --model baseline.")
        models = "baseline"
    out_root = out_root or Path(options.path.results_root) / options.name
    runs: list[TestRun] = []
    for key, block in sets.items():
        set_task = task.at_scale(block.scale or task.scale)
        # Per set: a task's default metrics depend on its scale (border crop = scale for SR).
        metrics = MetricSet(options.val.metrics if options.val.metrics is not None else set_task.default_metrics())
        nets: dict[str, torch.nn.Module] = {}
        if models in ("both", "net"):
            net = network_for_task(options.network_g, set_task)
            load_pretrained(net, weights, strict=options.path.strict_load_g, param_key=options.path.param_key_g)
            nets[str(options.network_g["type"])] = net.to(device)
        if models in ("both", "baseline"):
            baseline = network_for_task(set_task.baseline, set_task, path="task.baseline")
            nets[str(set_task.baseline["type"])] = baseline.to(device)
        dataset = build_dataset(block, set_task, key, options.manual_seed)
        if hasattr(dataset, "check_pairs"):  # sizes from headers, every key there: nothing written for a bad set
            dataset.check_pairs()
        name = block.name or key
        if block.scale is not None and len(sets) > 1:
            name = f"{name}_x{block.scale}" if f"x{block.scale}" not in name.lower() else name
        out_dir = out_root / name
        results = evaluate(nets, dataset, set_task, metrics, dataset_name=name, device=device,
                           quantize=options.val.quantize, tile=options.val.tile,
                           tile_overlap=options.val.tile_overlap, save_dir=out_dir if save_images else None,
                           figures=save_images, progress=progress)
        write_report(results, metrics, out_dir, title=f"{options.name} on {name} ({set_task.describe()})")
        runs.append(TestRun(name, results, out_dir, markdown_table(results, metrics),
                            weights if models != "baseline" else None))
    return runs


def summarize(runs: list[TestRun]) -> dict[str, Any]:
    """Mean of every metric per test set and model (for scripts and tests)."""
    return {run.dataset: {model: {m: run.results.mean(model, m) for m in run.results.metric_names}
                          for model in run.results.models} for run in runs}
