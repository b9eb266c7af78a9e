"""The training loop: one loop for CPU, one GPU or many (``accelerate launch restore train``).

Iterations count optimizer updates (BasicSR's ``total_iter``); the LR scheduler is not handed to
Accelerate so it steps once per update whatever the number of processes. Only the model and the
optimizer are prepared: batches come from our resumable sampler (`restore.data.paired`), which
already gives each process its share, so a resumed run sees exactly the batches the uninterrupted
one would have seen.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from restore.archs import arch_info, count_parameters
from restore.build import (
    build_dataset,
    build_loss,
    build_optimizer,
    build_scheduler,
    build_task,
    load_pretrained,
    network_for_task,
)
from restore.checkpoint import require_plugins, save_weights
from restore.data.catalog import check_paths
from restore.data.paired import TrainBatchSampler
from restore.errors import OptionError, RestoreError
from restore.evaluation import EvalResults, evaluate
from restore.inference import call_network
from restore.log import Scalars, get_logger
from restore.metrics import MetricSet
from restore.options import check_registered_blocks, dump_options
from restore.schema import Options
from restore.training_state import (
    TrainerCounters,
    latest_complete_state,
    load_training_state,
    prune_states,
    save_training_state,
)


@dataclass
class TrainResult:
    experiment_dir: Path
    iteration: int
    final_weights: Path
    last_validation: dict[str, float]


class TrainingDiverged(RestoreError):
    """The loss became NaN or infinite."""


def experiment_dir(options: Options) -> Path:
    return Path(options.path.experiments_root) / options.name


def _prepare_experiment_dir(root: Path, resuming: bool, is_main: bool) -> None:
    """Create the run folder; an earlier run of the same name is archived, never overwritten."""
    if is_main and root.exists() and not resuming:
        archived = root.with_name(f"{root.name}_archived_{time.strftime('%Y%m%d_%H%M%S')}")
        shutil.move(str(root), str(archived))
    if is_main:
        for sub in ("models", "training_states", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)


def _resolve_resume(options: Options, resume: str | bool | None, states_root: Path) -> Path | None:
    explicit = resume if isinstance(resume, str) else options.path.resume_state
    if explicit:
        state = Path(explicit)
        if not state.is_dir():
            raise OptionError(f"resume state {state} does not exist.")
        return state
    if resume:
        return latest_complete_state(states_root)
    return None


def _unwrap(accelerator: Any, net: nn.Module) -> nn.Module:
    net = accelerator.unwrap_model(net)
    return getattr(net, "_orig_mod", net)


def _pixel_loss(loss_fn: nn.Module, output: Any, gt: torch.Tensor, weights: list[float] | None) -> torch.Tensor:
    """The loss of one output, or the weighted sum over a list of per-step outputs (curriculum)."""
    if not isinstance(output, (list, tuple)):
        return loss_fn(output, gt)
    weights = weights or [1.0] * len(output)
    if len(weights) != len(output):
        raise OptionError(
            f"train.sequence_loss_weights has {len(weights)} values but the network returns {len(output)} outputs."
        )
    return sum(w * loss_fn(o, gt) for w, o in zip(weights, output))


def train(options: Options, *, resume: str | bool | None = None, dry_run: bool = False,
          progress: bool = True) -> TrainResult | None:
    """Train as the option file says; returns where the run's results are."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState
    from accelerate.utils import gather_object, set_seed
    from tqdm import tqdm

    if options.train is None:
        raise OptionError("train: missing; an option file for `restore train` needs a train block.")
    if "train" not in options.datasets:
        raise OptionError("datasets.train: missing; `restore train` needs a training dataset.")
    # weights this run will load name the packages they need: say which before options fail on a name
    require_plugins(options.path.pretrain_network_g,
                    experiment_dir(options) / "models" / "net_g_latest.safetensors" if resume else None)
    check_registered_blocks(options)
    check_paths(options.datasets)
    if dry_run:
        return None

    opt_train = options.train
    # Accelerate keeps its settings in a process-wide singleton; a second run in the same process
    # (a notebook, the tests) may ask for another precision. The process group itself is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        # Without a GPU, Accelerate only forms a multi-process (gloo) group when told it runs on the CPU.
        cpu=not torch.cuda.is_available(),
        mixed_precision=opt_train.mixed_precision,
        gradient_accumulation_steps=opt_train.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=options.find_unused_parameters)],
    )
    is_main = accelerator.is_main_process
    root = experiment_dir(options)
    states_root = root / "training_states"
    state_to_load = _resolve_resume(options, resume, states_root)
    _prepare_experiment_dir(root, resuming=bool(resume) or state_to_load is not None, is_main=is_main)
    accelerator.wait_for_everyone()
    log = get_logger(root / "logs" / f"train_{time.strftime('%Y%m%d_%H%M%S')}.log", enabled=is_main)
    if is_main:
        (root / "options.yml").write_text(dump_options(options), encoding="utf-8")
    scalars = Scalars(root / "tb_logger" if is_main and options.logger.use_tb_logger else None)

    # -- build everything ------------------------------------------------------------------------
    set_seed(options.manual_seed)
    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    info = arch_info(net)
    if options.path.pretrain_network_g:
        load_pretrained(net, options.path.pretrain_network_g, strict=options.path.strict_load_g,
                        param_key=options.path.param_key_g)
        log.info("loaded pretrained weights from %s", options.path.pretrain_network_g)
    ema = None
    if opt_train.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(opt_train.ema_decay), use_buffers=True)
    optimizer = build_optimizer(opt_train.optim_g, [p for p in net.parameters() if p.requires_grad])
    scheduler = build_scheduler(opt_train.scheduler, optimizer)
    loss_fn = build_loss(opt_train.pixel_opt)
    train_block = options.datasets["train"]
    train_set = build_dataset(train_block, task, "train", options.manual_seed)
    val_blocks = options.eval_sets("val")
    val_sets = {}
    for key, block in val_blocks.items():
        val_task = task.at_scale(block.scale or task.scale)
        # per set: a task's default metrics depend on its scale (SR crops a border of `scale` pixels)
        metrics = MetricSet(options.val.metrics if options.val.metrics is not None else val_task.default_metrics())
        val_sets[key] = (block, build_dataset(block, val_task, key, options.manual_seed), metrics)

    net, optimizer = accelerator.prepare(net, optimizer)
    if ema is not None:
        ema.to(accelerator.device)
    counters = TrainerCounters()
    if state_to_load is not None:
        counters = load_training_state(accelerator, state_to_load, ema=ema, scheduler=scheduler)
        log.info("resumed from %s at iteration %d", state_to_load, counters.iteration)
    elif resume:
        log.info("no complete training state under %s; starting from scratch", states_root)

    sampler = TrainBatchSampler(
        len(train_set), train_block.batch_size_per_gpu, options.manual_seed,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index,
        enlarge_ratio=train_block.dataset_enlarge_ratio, scales=train_set.scales,
        start_batch=counters.iteration * opt_train.gradient_accumulation_steps,
    )
    loader = DataLoader(
        train_set, batch_sampler=sampler, num_workers=train_block.num_worker_per_gpu,
        pin_memory=train_block.pin_memory, persistent_workers=train_block.num_worker_per_gpu > 0,
        generator=torch.Generator(),  # keeps the loader from consuming the global RNG
    )
    if is_main:
        log.info("task %s; network %s, %s parameters (%s trainable); %d training images; %d process(es) on %s",
                 task.describe(), options.network_g.get("type"), f"{count_parameters(_unwrap(accelerator, net)):,}",
                 f"{count_parameters(_unwrap(accelerator, net), trainable_only=True):,}", len(train_set),
                 accelerator.num_processes, accelerator.device)

    # -- the loop --------------------------------------------------------------------------------
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    last_val: dict[str, float] = {}
    running: dict[str, float] = {}
    steps_since_log = 0
    bar = tqdm(total=opt_train.total_iter, initial=counters.iteration, desc=options.name, unit="it",
               disable=not (progress and is_main), dynamic_ncols=True)
    net.train()
    batches = iter(loader)
    tick = time.time()
    while counters.iteration < opt_train.total_iter:
        batch = next(batches)
        lq = batch["lq"].to(accelerator.device, non_blocking=True)
        gt = batch["gt"].to(accelerator.device, non_blocking=True)
        guide = batch["guide"].to(accelerator.device, non_blocking=True) if "guide" in batch else None
        with accelerator.accumulate(net):
            output = call_network(net, lq, scale=int(batch["scale"][0]), info=info, guide=guide)
            loss = _pixel_loss(loss_fn, output, gt, opt_train.sequence_loss_weights)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss.item()} at iteration {counters.iteration + 1} "
                    f"(network {options.network_g.get('type')}, mixed_precision {opt_train.mixed_precision}). "
                    "Lower train.optim_g.lr, set train.grad_clip, or use bf16 instead of fp16."
                )
            accelerator.backward(loss)
            if accelerator.sync_gradients and opt_train.grad_clip:
                accelerator.clip_grad_norm_(net.parameters(), opt_train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        running["l_pix"] = running.get("l_pix", 0.0) + loss.detach().item()
        steps_since_log += 1
        if not accelerator.sync_gradients:
            continue

        counters.iteration += 1
        scheduler.step()
        if counters.iteration <= opt_train.warmup_iter:  # BasicSR-style linear warm-up
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * counters.iteration / opt_train.warmup_iter
        if ema is not None:
            ema.update_parameters(_unwrap(accelerator, net))
        bar.update(1)
        it = counters.iteration

        if it % options.logger.print_freq == 0 or it == opt_train.total_iter:
            elapsed = time.time() - tick
            rate = steps_since_log / max(elapsed, 1e-9) / opt_train.gradient_accumulation_steps
            # every process reaches this line at the same iteration; log the mean over processes
            mean_loss = accelerator.reduce(torch.tensor(running["l_pix"] / steps_since_log,
                                                        device=accelerator.device), "mean").item()
            lr = optimizer.param_groups[0]["lr"]
            eta = (opt_train.total_iter - it) / max(rate, 1e-9)
            log.info("[iter %d/%d] l_pix %.4e  lr %.3e  %.2f it/s  eta %s", it, opt_train.total_iter, mean_loss,
                     lr, rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
            scalars.add("train/l_pix", mean_loss, it)
            scalars.add("train/lr", lr, it)
            bar.set_postfix(l_pix=f"{mean_loss:.3e}", lr=f"{lr:.1e}")
            running, steps_since_log, tick = {}, 0, time.time()

        if val_sets and (it % options.val.val_freq == 0 or it == opt_train.total_iter):
            last_val = _validate(options, val_sets, ema or _unwrap(accelerator, net), accelerator,
                                 it, counters, log, scalars, root, gather_object, progress)
            net.train()

        if it % options.logger.save_checkpoint_freq == 0 or it == opt_train.total_iter:
            _save_checkpoint(options, accelerator, net, ema, scheduler, counters, root)
    bar.close()
    scalars.close()
    final = root / "models" / ("net_g_ema_latest.safetensors" if ema is not None else "net_g_latest.safetensors")
    if is_main:
        log.info("done: %d iterations; weights in %s", counters.iteration, final)
    return TrainResult(root, counters.iteration, final, last_val)


def _validate(options: Options, val_sets: dict[str, Any], model: nn.Module, accelerator: Any, iteration: int,
              counters: TrainerCounters, log: Any, scalars: Scalars, root: Path, gather: Any,
              progress: bool) -> dict[str, float]:
    model = model.module if hasattr(model, "n_averaged") else model  # AveragedModel wraps the EMA net
    summary: dict[str, float] = {}
    for key, (block, dataset, metrics) in val_sets.items():
        name = block.name or key
        save_dir = root / "visualization" / name / f"{iteration:08d}" if options.val.save_img else None
        results: EvalResults = evaluate(
            {"net": model}, dataset, dataset.task, metrics, dataset_name=name, device=accelerator.device,
            quantize=options.val.quantize, tile=options.val.tile, tile_overlap=options.val.tile_overlap,
            save_dir=save_dir if accelerator.is_main_process else None, progress=options.val.pbar and progress,
            rank=accelerator.process_index, world_size=accelerator.num_processes, gather=gather,
        )
        parts = []
        for metric in results.metric_names:
            value = results.mean("net", metric)
            tag = f"{name}/{metric}"
            summary[tag] = value
            scalars.add(f"val/{tag}", value, iteration)
            best = counters.best.get(tag)
            higher = metrics.higher_is_better(metric)
            if best is None or (value > best["value"] if higher else value < best["value"]):
                counters.best[tag] = {"value": value, "iteration": iteration}
            parts.append(f"{metric} {value:.4f} (best {counters.best[tag]['value']:.4f} "
                         f"@ {int(counters.best[tag]['iteration'])})")
        log.info("[val %s @ %d] %s", name, iteration, ", ".join(parts))
    return summary


def _save_checkpoint(options: Options, accelerator: Any, net: nn.Module, ema: Any, scheduler: Any,
                     counters: TrainerCounters, root: Path) -> None:
    it = counters.iteration
    models = root / "models"
    if accelerator.is_main_process:
        task_options = dict(options.task)
        if options.scale is not None:
            task_options.setdefault("scale", options.scale)
        exported = {"net_g": _unwrap(accelerator, net)}
        if ema is not None:
            exported["net_g_ema"] = ema.module
        for label, model in exported.items():
            path = save_weights(models / f"{label}_{it}.safetensors", model.state_dict(),
                                network=options.network_g, task=task_options)
            shutil.copyfile(path, models / f".{label}_latest.tmp")
            (models / f".{label}_latest.tmp").replace(models / f"{label}_latest.safetensors")
    save_training_state(accelerator, root / "training_states", counters, ema=ema, scheduler=scheduler)
    if accelerator.is_main_process:
        prune_states(root / "training_states", options.logger.keep_checkpoints)


def iterations_done(root: Path) -> int:
    """The iteration of the newest complete training state of a run folder (0 if none)."""
    state = latest_complete_state(root / "training_states")
    return int(state.name) if state is not None else 0

