"""``restore test``: score a trained network (and the task's baseline) on test sets.

Everything is built and checked first (options, every set's task, metrics, networks, datasets
and the names that become folders), so a bad set stops the run before any file is written.
Then each set is scored and its report written to ``results/<run>/<set>/``: ``metrics.csv``
and ``metrics.md`` (per image and mean), a chart per metric, the restored outputs of each model
(``<model>/``), per-image figures (``figures/``) and ``index.html``; ``results/<run>/index.html``
links the sets. ``<run>`` is the experiment's name (from the option file, or recorded with the
weights) plus ``_x<scale>`` when every set has one scale and the name does not already say it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from restore.build import build_dataset, build_task, load_pretrained, network_for_task, read_state_dict
from restore.data.catalog import check_paths
from restore.errors import OptionError
from restore.evaluation import EvalResults, evaluate
from restore.metrics import MetricSet
from restore.options import apply_overrides, check_registered_blocks, validate
from restore.paths import inside, path_component
from restore.report.charts import write_charts
from restore.report.figures import FigurePolicy, FigureWriter, SetFigures
from restore.report.html import write_run_page, write_set_page
from restore.report.tables import markdown_table, write_tables
from restore.schema import DatasetOptions, Options
from restore.tasks import Task

GENERIC_FOLDERS = ("hr", "gt", "gt_mod", "images", "depth")  # e.g. Set5/HR -> Set5


@dataclass
class TestRun:
    """One evaluated test set: its results and where the report was written."""

    dataset: str
    results: EvalResults
    out_dir: Path
    table: str
    weights: str | None
    page: Path | None = None


@dataclass
class PreparedSet:
    """A test set with everything built and checked, ready to score."""

    key: str
    name: str
    task: Task
    metrics: MetricSet
    dataset: Any
    nets: dict[str, torch.nn.Module]
    labels: dict[str, str]
    out_dir: Path


def experiment_name(weights: str) -> str:
    """The experiment a weights file belongs to: recorded in its metadata (``experiment``), else
    the experiment folder it sits in (``<name>/models/net_g_latest.safetensors``), else its stem."""
    _, meta = read_state_dict(weights)
    path = Path(weights)
    recorded = meta.get("experiment")
    if isinstance(recorded, str) and recorded.strip():
        return recorded
    if path.parent.name == "models" and path.parent.parent.name:
        return path.parent.parent.name
    return path.stem


def checkpoint_options(weights: str, overrides: Iterable[str] = ()) -> Options:
    """Options from a weights file that records its network and task (``name`` = its experiment),
    with `overrides` (``--set``) applied on top."""
    _, meta = read_state_dict(weights)
    for key in ("network", "task"):
        if key not in meta:
            raise OptionError(f"{weights}: does not record its {key} options; use an option file (-opt) instead.")
    data = {"name": experiment_name(weights), "task": meta["task"], "network_g": meta["network"]}
    return validate(apply_overrides(data, list(overrides)), source=weights)


def options_from_checkpoint(weights: str, dataset: str | None, overrides: Iterable[str] = ()) -> Options:
    """Options for ``restore test --weights W --dataset D`` with no option file: the task and the
    network come from the weights file's metadata; `overrides` (``--set``) apply on top."""
    if dataset is None:
        raise OptionError("--dataset: required when no option file is given.")
    return checkpoint_options(weights, overrides)


def split_dataset_overrides(overrides: Iterable[str]) -> tuple[list[str], list[str]]:
    """(overrides of the test sets, ``datasets.*`` but the training set, the others). The training
    set's are kept with the others: a test never reads it, and train and test often share overrides."""
    datasets, rest = [], []
    for item in overrides:
        key = item.strip()
        (datasets if key.startswith("datasets.") and not key.startswith("datasets.train.") else rest).append(item)
    return datasets, rest


def trained_weights(options: Options) -> str | None:
    """The weights `restore train` left for this option file (EMA first), if it was trained here."""
    models = Path(options.path.experiments_root) / options.name / "models"
    for name in ("net_g_ema_latest.safetensors", "net_g_latest.safetensors"):
        if (models / name).is_file():
            return str(models / name)
    return None


def _replacements(pairs: list[str] | None, flag: str) -> dict[str, str] | None:
    """``["_HR=_LR"]`` -> ``{"_HR": "_LR"}`` (the value of `flag`, repeatable)."""
    if not pairs:
        return None
    found = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            raise OptionError(f"{flag} {pair!r}: expected OLD=NEW, e.g. {flag} _HR=_LR.")
        found[old] = new
    return found


def test_sets(options: Options, dataset: str | None, lq: str | None, filename_tmpl: str,
              scale: int | None, guide: str | None = None, *, dataset_overrides: Iterable[str] = (),
              lq_replace: list[str] | None = None, guide_replace: list[str] | None = None
              ) -> dict[str, DatasetOptions]:
    """The test sets to run: the one named on the command line, else ``test_*``, else ``val*``.

    With `dataset`, the set is ``datasets.test`` and `dataset_overrides` (``--set datasets.test.*``)
    apply to it; an override of another set, or of the GT folder that `dataset` names, is refused."""
    if dataset is None:
        if lq_replace or guide_replace:
            raise OptionError("--lq-replace/--guide-replace: go with --dataset; in an option file set "
                              "datasets.<set>.lq_replace / guide_replace.")
        sets = options.eval_sets("test") or options.eval_sets("val")
        if not sets:
            raise OptionError("datasets: no test_* or val dataset in the option file; give --dataset FOLDER.")
        if scale is not None:
            sets = {k: v.model_copy(update={"scale": scale}) for k, v in sets.items()}
        return sets
    folder = Path(dataset)
    generic = folder.name.lower() in GENERIC_FOLDERS
    block: dict[str, Any] = {"name": folder.parent.name if generic else folder.name, "dataroot_gt": dataset,
                             "filename_tmpl": filename_tmpl}
    for key, value in (("dataroot_lq", lq), ("dataroot_guide", guide), ("scale", scale),
                       ("lq_replace", _replacements(lq_replace, "--lq-replace")),
                       ("guide_replace", _replacements(guide_replace, "--guide-replace"))):
        if value is not None:
            block[key] = value
    overrides = list(dataset_overrides)
    for item in overrides:
        path = item.split("=", 1)[0].strip()
        if not path.startswith("datasets.test."):
            raise OptionError(f"--set {path}: --dataset replaces the option file's test sets with one set, "
                              "datasets.test; set its keys as datasets.test.<key>=VALUE.")
        if path == "datasets.test.dataroot_gt":
            raise OptionError(f"--set {path}: conflicts with --dataset {dataset}, which names the GT folder; "
                              "give one of them.")
    block = apply_overrides({"datasets": {"test": block}}, overrides)["datasets"]["test"]
    return {"test": DatasetOptions.model_validate(block)}


def _metric_options(options: Options, task: Task) -> dict[str, dict[str, Any]]:
    """``val.metrics`` (or the task's defaults); a listed metric without ``unit`` takes the unit the
    task gives the same metric type (RMSE in cm stays labelled cm)."""
    defaults = task.default_metrics()
    if options.val.metrics is None:
        return defaults
    units = {block.get("type"): block["unit"] for block in defaults.values() if "unit" in block}
    return {label: ({**block, "unit": units[block.get("type", label)]}
                    if "unit" not in block and block.get("type", label) in units else dict(block))
            for label, block in options.val.metrics.items()}


def run_name(options: Options, sets: Mapping[str, DatasetOptions], task: Task) -> str:
    """The run's folder: the experiment's name, plus ``_x<scale>`` when every set has one scale."""
    name = path_component(options.name, "name")
    scales = {block.scale or task.scale for block in sets.values()}
    if len(scales) == 1:
        scale = scales.pop()
        if scale > 1 and f"x{scale}" not in name.lower():
            name = f"{name}_x{scale}"
    return name


def _prepare(options: Options, sets: dict[str, DatasetOptions], task: Task, weights: str | None, models: str,
             out_root: Path, device: str) -> list[PreparedSet]:
    """Build and check every set's task, metrics, networks and dataset; write nothing."""
    prepared = []
    folders: dict[str, str] = {}
    for key, block in sets.items():
        set_task = task.at_scale(block.scale or task.scale)
        # Per set: a task's default metrics depend on its scale (border crop = scale for SR).
        metrics = MetricSet(_metric_options(options, set_task))
        nets: dict[str, torch.nn.Module] = {}
        labels: dict[str, str] = {}
        if models in ("both", "net"):
            net = network_for_task(options.network_g, set_task)
            load_pretrained(net, weights, strict=options.path.strict_load_g, param_key=options.path.param_key_g)
            model = path_component(str(options.network_g["type"]), "network_g.type")
            nets[model], labels[model] = net.to(device), model
        if models in ("both", "baseline"):
            baseline = network_for_task(set_task.baseline, set_task, path="task.baseline")
            model = path_component(str(set_task.baseline["type"]), "task.baseline.type")
            model = f"{model}_baseline" if model in nets else model
            nets[model], labels[model] = baseline.to(device), set_task.baseline_name()
        dataset = build_dataset(block, set_task, key, options.manual_seed)
        if hasattr(dataset, "check_pairs"):  # sizes from headers, every key there: nothing written for a bad set
            dataset.check_pairs()
        name = path_component(block.name or key, f"datasets.{key}.name")
        if block.scale is not None and len(sets) > 1 and f"x{block.scale}" not in name.lower():
            name = f"{name}_x{block.scale}"
        if name in folders:
            raise OptionError(f"datasets.{key}.name: '{name}' is also the name of datasets.{folders[name]}; two sets "
                              "would write one report folder.")
        folders[name] = key
        out_dir = inside(out_root, name, what=f"datasets.{key}.name")
        prepared.append(PreparedSet(key, name, set_task, metrics, dataset, nets, labels, out_dir))
    return prepared


def run_tests(options: Options, *, weights: str | None, models: str, sets: dict[str, DatasetOptions],
              out_root: Path | None = None, save_images: bool = True, device: str | None = None,
              progress: bool = True, figures: FigurePolicy | None = None, error_scale: str = "set") -> list[TestRun]:
    """Evaluate `models` (``both``, ``net`` or ``baseline``) on every set; write the reports.

    figures: which images get figures (default: the worst 100); ``save_images=False`` (only the
        metrics and the page) draws none. error_scale: ``set`` (one error scale per set) or ``image``.
    """
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
    policy = (figures or FigurePolicy("worst", 100)) if save_images else FigurePolicy("none")
    if out_root is None:
        out_root = inside(options.path.results_root, run_name(options, sets, task), what="name")
    prepared = _prepare(options, sets, task, weights, models, out_root, device)

    runs: list[TestRun] = []
    for item in prepared:
        runs.append(_score_and_report(options, item, policy, error_scale, save_images, device, progress,
                                      weights if models != "baseline" else None))
    if runs:
        title = f"{options.name}: {', '.join(run.dataset for run in runs)}"
        write_run_page(out_root, title, [(p.name, p.task.describe(), r.results, p.metrics)
                                         for p, r in zip(prepared, runs, strict=True)])
    return runs


def _score_and_report(options: Options, item: PreparedSet, policy: FigurePolicy, error_scale: str,
                      save_images: bool, device: str, progress: bool, weights: str | None) -> TestRun:
    baseline = next((m for m, label in item.labels.items() if label == item.task.baseline_name()), None)
    context = SetFigures(item.task, item.metrics, item.out_dir, list(item.nets), item.labels, baseline, error_scale)
    figures = FigureWriter(context, policy)
    results = evaluate(item.nets, item.dataset, item.task, item.metrics, dataset_name=item.name, device=device,
                       quantize=options.val.quantize, tile=options.val.tile, tile_overlap=options.val.tile_overlap,
                       save_dir=item.out_dir if save_images else None, labels=item.labels,
                       on_image=figures if policy.mode != "none" else None, progress=progress)
    title = f"{options.name} on {item.name} ({item.task.describe()})"
    item.out_dir.mkdir(parents=True, exist_ok=True)
    files = [p.name for p in write_tables(results, item.metrics, item.out_dir, title=title).values()]
    charts = [p.name for p in write_charts(results, item.metrics, item.out_dir).values()]
    drawn = figures.finish()
    saved = f"outputs: {item.task.saved_as} in " + ", ".join(f"{m}/" for m in results.models) if save_images else \
        "outputs not saved (--no-save-img)"
    description = (f"{item.task.describe()}; {len(results.images)} images; models: "
                   f"{', '.join(results.label(m) for m in results.models)}; {saved}; figures: {policy}")
    model, metric = context.ranked
    page = write_set_page(item.out_dir, title=title, description=description, results=results,
                          metrics=item.metrics, figures=drawn, ranked_by=f"{metric} of {results.label(model)}",
                          files=files, charts=charts)
    return TestRun(item.name, results, item.out_dir, markdown_table(results, item.metrics), weights, page)


def summarize(runs: list[TestRun]) -> dict[str, Any]:
    """Mean of every metric per test set and model (for scripts and tests)."""
    return {run.dataset: {run.results.label(model): {m: run.results.mean(model, m) for m in run.results.metric_names}
                          for model in run.results.models} for run in runs}
