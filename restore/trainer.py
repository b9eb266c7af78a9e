"""The training loop: one loop for CPU, one GPU or many (``accelerate launch restore train``).

A run has three stages, each its own function:

1. `build_training` builds and checks everything that can fail (task, network, loss, optimizer,
   scheduler, datasets, every scale the network must serve, the first training sample through the
   network and the loss) without touching the experiment folder. ``--dry-run`` is this stage alone.
2. `train` then takes the experiment's lock, finds the state to resume (verified by checksum) and
   only then archives an earlier run or creates the folders.
3. `_loop` trains. Nothing in a step waits for the device: the loss is summed on the device and
   read, with the NaN check, only when a log line, a validation or a checkpoint needs it.

Iterations count optimizer updates (BasicSR's ``total_iter``); the LR scheduler is not handed to
Accelerate so it steps once per update whatever the number of processes. Batches come from our
resumable sampler (`restore.data.paired`), which already gives each process its share, so a resumed
run sees exactly the batches the uninterrupted one would have seen.
"""

from __future__ import annotations

import errno
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from restore.archs import ArchInfo, arch_info, count_parameters
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
from restore.data.paired import SampleKey, TrainBatchSampler, batch_to_device
from restore.errors import CheckpointError, OptionError, RestoreError
from restore.evaluation import EvalResults, evaluate
from restore.experiment import ExperimentLock, archive_folder, describe_holder, experiment_dir, make_run_folders
from restore.inference import call_network
from restore.log import Scalars, get_logger
from restore.metrics import MetricSet
from restore.options import check_registered_blocks, dump_options
from restore.schema import Options
from restore.tasks import Task
from restore.threads import single_threaded_opencv, single_threaded_worker
from restore.training_state import (
    TrainerCounters,
    check_state_fits,
    latest_complete_state,
    load_training_state,
    prune_states,
    resumable_state,
    save_training_state,
    verification_problem,
)


@dataclass
class TrainResult:
    experiment_dir: Path
    iteration: int
    final_weights: Path
    last_validation: dict[str, float]
    archived: Path | None = None  # where an earlier run of the same name was moved


class TrainingDiverged(RestoreError):
    """The loss became NaN or infinite."""


@dataclass
class TrainingSetup:
    """Everything a run needs, built and checked; nothing written yet."""

    options: Options
    task: Task
    net: nn.Module
    info: ArchInfo
    loss_fn: nn.Module
    train_set: Any
    val_sets: dict[str, tuple[Any, Any, MetricSet]]
    notes: list[str] = field(default_factory=list)  # log lines for when the log exists


# -- stage 1: build and check -------------------------------------------------------------------


def build_training(options: Options, device: torch.device | str = "cpu") -> TrainingSetup:
    """Build the task, network, loss, optimizer, scheduler and datasets and run the first training
    sample through the network; raise a RestoreError for anything wrong. Touches no file."""
    if options.train is None:
        raise OptionError("train: missing; an option file for `restore train` needs a train block.")
    if "train" not in options.datasets:
        raise OptionError("datasets.train: missing; `restore train` needs a training dataset.")
    experiment_dir(options.path.experiments_root, options.name)  # a usable folder name
    check_registered_blocks(options)
    check_paths(options.datasets)

    from accelerate.utils import set_seed

    set_seed(options.manual_seed)  # the network's initial weights
    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    notes = []
    if options.path.pretrain_network_g:
        load_pretrained(net, options.path.pretrain_network_g, strict=options.path.strict_load_g,
                        param_key=options.path.param_key_g)
        notes.append(f"loaded pretrained weights from {options.path.pretrain_network_g}")
    info = arch_info(net)
    loss_fn = build_loss(options.train.pixel_opt)
    # Built here so that bad values fail before any file is touched; the run builds its own after prepare.
    build_scheduler(options.train.scheduler, build_optimizer(options.train.optim_g, list(net.parameters())))
    notes += _milestone_notes(options)

    train_block = options.datasets["train"]
    train_set = build_dataset(train_block, task, "train", options.manual_seed)
    if len(train_set) == 0:
        raise OptionError("datasets.train: the training dataset is empty.")
    if hasattr(train_set, "check_pairs"):  # headers only: sizes, patch fits, LMDB keys present
        train_set.check_pairs()
    val_sets = {}
    for key, block in options.eval_sets("val").items():
        val_task = task.at_scale(block.scale or task.scale)
        # per set: a task's default metrics depend on its scale (SR crops a border of `scale` pixels)
        metrics = MetricSet(options.val.metrics if options.val.metrics is not None else val_task.default_metrics())
        dataset = build_dataset(block, val_task, key, options.manual_seed)
        if hasattr(dataset, "check_pairs"):
            dataset.check_pairs()
        val_sets[key] = (block, dataset, metrics)

    net.to(device)
    scales = sorted({*(getattr(train_set, "scales", None) or [task.scale]),
                     *(block.scale or task.scale for block, _, _ in val_sets.values())})
    for scale in scales:
        _check_serves_scale(net, info, task, scale, device)
    _check_first_sample(net, info, train_set, loss_fn, device, options)
    return TrainingSetup(options, task, net, info, loss_fn, train_set, val_sets, notes)


def _milestone_notes(options: Options) -> list[str]:
    """A note when MultiStepLR milestones lie beyond total_iter (fine for a shortened run, else a typo)."""
    milestones = (options.train.scheduler or {}).get("milestones")
    if isinstance(milestones, (list, tuple)) and any(isinstance(m, int) and m > options.train.total_iter
                                                     for m in milestones):
        return [f"train.scheduler.milestones {list(milestones)}: those beyond train.total_iter "
                f"{options.train.total_iter} are never reached"]
    return []


def _network_name(net: nn.Module) -> str:
    return type(net).__name__


@torch.no_grad()
def _check_serves_scale(net: nn.Module, info: ArchInfo, task: Task, scale: int, device: Any) -> None:
    """The network turns a small input into one `scale` times larger (catches a task scale the
    network was not built for, e.g. task.scale 3 for network_g.scales [2])."""
    multiple = max(1, int(info.size_multiple))
    side = -(-16 // multiple) * multiple
    generator = torch.Generator().manual_seed(0)  # not the global RNG: the run's randomness is untouched
    x = torch.rand(1, task.in_chans, side, side, generator=generator).to(device)
    guide = torch.rand(1, 3, side * scale, side * scale, generator=generator).to(device) if info.guided else None
    was_training = net.training
    net.eval()
    try:
        out = call_network(net, x, scale=scale, info=info, guide=guide)
    except RestoreError as exc:
        raise OptionError(f"network_g: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the arch's own error, reported with the scale it failed at
        raise OptionError(f"network_g: {_network_name(net)} fails at scale {scale} ({_first_line(exc)}); check "
                          "task.scale and the network's scale options (scale/upscale/scales).") from None
    finally:
        net.train(was_training)
    out = out[-1] if isinstance(out, (list, tuple)) else out
    expected = (1, task.out_chans, side * scale, side * scale)
    if tuple(out.shape) != expected:
        raise OptionError(f"network_g: {_network_name(net)} turns a {side}x{side} input into "
                          f"{out.shape[-1]}x{out.shape[-2]} with {out.shape[1]} channel(s), but scale {scale} needs "
                          f"{side * scale}x{side * scale} with {task.out_chans}; check task.scale and the network's "
                          "scale options.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _training_scales(train_set: Any) -> list[int | None]:
    return getattr(train_set, "scales", None) or [None]


@torch.no_grad()
def _first_patch(net: nn.Module, info: ArchInfo, train_set: Any, scale: int | None,
                 device: Any) -> tuple[dict[str, Any], torch.Tensor]:
    """(batch, output) of the first training sample at `scale`, in eval mode (no batch-norm update)."""
    from torch.utils.data import default_collate

    batch = batch_to_device(default_collate([train_set[SampleKey(0, 0, scale)]]), device)
    was_training = net.training
    net.eval()
    try:
        output = call_network(net, batch["lq"], scale=int(batch["scale"][0]), info=info, guide=batch.get("guide"))
    finally:
        net.train(was_training)
    return batch, output[-1] if isinstance(output, (list, tuple)) else output


@torch.no_grad()
def _check_first_sample(net: nn.Module, info: ArchInfo, train_set: Any, loss_fn: nn.Module, device: Any,
                        options: Options) -> None:
    """The first training sample of every training scale through data loading, the network and the loss."""
    for scale in _training_scales(train_set):
        try:
            batch, output = _first_patch(net, info, train_set, scale, device)
        except RestoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - the arch's own failure, named with the block
            raise OptionError(f"network_g: {_network_name(net)} fails on the first training patch: "
                              f"{_first_line(exc)}.") from None
        if output.shape != batch["gt"].shape:
            raise OptionError(
                f"network_g: {_network_name(net)} turns a training patch of {list(batch['lq'].shape[1:])} into "
                f"{list(output.shape[1:])}, but its GT patch is {list(batch['gt'].shape[1:])}; check task.scale, "
                "the network's scale options and datasets.train.gt_size/lq_size."
            )
        try:
            loss = loss_fn(output, batch["gt"])
        except Exception as exc:  # noqa: BLE001
            raise OptionError(f"train.pixel_opt: the loss fails on the first training patch: "
                              f"{_first_line(exc)}.") from None
        if not torch.isfinite(loss):
            raise RestoreError(f"the loss of the first training sample is {loss.item()} before any update; "
                               f"check the data ({options.datasets['train'].dataset_kwargs().get('dataroot_gt')}) "
                               "and train.pixel_opt.")


# -- stage 2: the experiment folder ------------------------------------------------------------


def find_resume_state(options: Options, resume: str | bool | None,
                      auto_resume: bool) -> tuple[Path | None, list[tuple[str, str]]]:
    """The verified state to continue from, and (state, problem) for each newer one passed over.

    ``--resume`` with no state to resume is an error; ``--auto-resume`` starts afresh instead."""
    root = experiment_dir(options.path.experiments_root, options.name) / "training_states"
    explicit = resume if isinstance(resume, str) else options.path.resume_state
    if explicit:
        state = Path(explicit)
        if not state.is_dir():
            raise OptionError(f"resume state {state} does not exist.")
        problem = verification_problem(state)
        if problem is not None:
            raise CheckpointError(f"{state}: cannot resume from this training state: {problem}.")
        return state, []
    if not (resume or auto_resume):
        return None, []
    state, skipped = resumable_state(root)
    if state is None and not auto_resume:
        found = f" ({'; '.join(f'{name}: {problem}' for name, problem in skipped)})" if skipped else ""
        raise CheckpointError(f"--resume: no training state to resume under {root}{found}. Run without --resume to "
                              "start a new run, or with --auto-resume to resume when a state exists.")
    return state, skipped


def _set_aside(skipped: list[tuple[str, str]], root: Path) -> None:
    """Rename states that failed verification so no later resume or prune trips over them again."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    for name, _ in skipped:
        folder = root / name
        if folder.is_dir():
            folder.rename(folder.with_name(f"{folder.name}.unverified-{stamp}"))


def _make_accelerator(options: Options) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    # Accelerate keeps its settings in a process-wide singleton; a second run in the same process
    # (a notebook, the tests) may ask for another precision. The process group itself is kept.
    AcceleratorState._reset_state()
    return Accelerator(
        # Without a GPU, Accelerate only forms a multi-process (gloo) group when told it runs on the CPU.
        cpu=not torch.cuda.is_available(),
        mixed_precision=options.train.mixed_precision,
        gradient_accumulation_steps=options.train.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=options.find_unused_parameters)],
    )


def _on_main(accelerator: Any, action: Any) -> Any:
    """Run `action` on the main process and give every process its result, or its error."""
    from accelerate.utils import broadcast_object_list

    outcome: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            outcome = [("ok", action())]
        except RestoreError as exc:
            outcome = [("error", exc)]
    if accelerator.num_processes > 1:
        broadcast_object_list(outcome, from_process=0)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def train(options: Options, *, resume: str | bool | None = None, auto_resume: bool = False, dry_run: bool = False,
          progress: bool = True, threads: str = "") -> TrainResult | None:
    """Train as the option file says; returns where the run's results are (None for a dry run).

    `resume`: True for the newest verified state of this experiment (an error if there is none), or a
    state folder; `auto_resume`: resume when a state exists, else start afresh. `threads` describes the
    CPU threads in use, for the log."""
    # Weights this run will load name the packages they need: say which before options fail on a name.
    resuming_from = experiment_dir(options.path.experiments_root, options.name) / "models" / "net_g_latest.safetensors"
    require_plugins(options.path.pretrain_network_g, resuming_from if (resume or auto_resume) else None)
    if dry_run:
        build_training(options, "cpu")
        find_resume_state(options, resume, auto_resume)
        return None
    if options.train is None:
        raise OptionError("train: missing; an option file for `restore train` needs a train block.")
    accelerator = _make_accelerator(options)
    setup = build_training(options, accelerator.device)
    root = experiment_dir(options.path.experiments_root, options.name)
    lock = ExperimentLock(root)
    _on_main(accelerator, lambda: lock.acquire() and None)
    try:
        state, skipped = _on_main(accelerator, lambda: find_resume_state(options, resume, auto_resume))
        if state is not None:
            check_state_fits(state, setup.net)
        archived = _on_main(accelerator, lambda: _open_folder(root, state, skipped))
        accelerator.wait_for_everyone()
        log = get_logger(root / "logs" / f"train_{time.strftime('%Y%m%d_%H%M%S')}.log",
                         enabled=accelerator.is_main_process)
        if lock.previous_holder:
            log.info("took over the lock of an earlier run that has ended (%s)", describe_holder(lock.previous_holder))
        if archived is not None:
            log.info("an earlier run of %s was moved to %s", options.name, archived)
        for name, problem in skipped:
            log.warning("training state %s does not verify (%s); set aside as %s.unverified-* and passed over",
                        name, problem, name)
        for note in setup.notes:
            log.info(note)
        if threads:
            log.info("training step on %s; %s", accelerator.device, threads)
        result = _run(setup, accelerator, root, state, log, progress)
        result.archived = archived
        return result
    finally:
        if accelerator.is_main_process:
            lock.release()


def _open_folder(root: Path, state: Path | None, skipped: list[tuple[str, str]]) -> Path | None:
    """Main process, under the lock: archive an earlier run unless resuming it; create the folders."""
    archived = None
    if state is None and root.exists():
        archived = archive_folder(root)
    else:
        _set_aside(skipped, root / "training_states")
    make_run_folders(root)
    return archived


# -- stage 3: the loop -----------------------------------------------------------------------------


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


class RunningLoss:
    """The sum of step losses, kept on the device and read (one sync) only when a log line, a validation
    or a checkpoint needs it: reading it every step (``loss.item()``) would stall a CUDA stream each time."""

    def __init__(self, device: Any, first_iteration: int) -> None:
        self.device, self.first = device, first_iteration
        self.total, self.steps = torch.zeros((), device=device), 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().float()
        self.steps += 1

    def read(self, accelerator: Any, iteration: int) -> tuple[float, int, int]:
        """(mean over steps and processes, steps, first iteration covered), then starts a new sum."""
        mean = accelerator.reduce(self.total / max(self.steps, 1), "mean").item()
        result = (mean, self.steps, self.first)
        self.total, self.steps, self.first = torch.zeros((), device=self.device), 0, iteration + 1
        return result


def _describe_sharing(net: nn.Module) -> list[str]:
    """describe() of each sharing scheme of the network (outermost only: a compose scheme speaks for its rules)."""
    from restore.sharing import SharingScheme

    lines, inner = [], set()
    for name, module in net.named_modules():
        if isinstance(module, SharingScheme) and not any(name.startswith(f"{p}.") for p in inner):
            where = "" if name in ("", "sharing") else f" (module {name})"  # `sharing` is the usual attribute
            lines.append(f"sharing{where}: {module.describe()}")
            inner.add(name)
    return lines


def _compile_in_place(net: nn.Module, setup: TrainingSetup, device: Any, log: Any) -> None:
    """``net.compile()`` when it compiles here (the module and its state_dict keys stay as they are, so
    states and weights are the same compiled or not); otherwise the eager network, saying why."""
    opt_train = setup.options.train
    try:
        net.compile(mode=None if opt_train.compile_mode == "default" else opt_train.compile_mode)
        # The eager network passed build_training's checks on these samples: a failure now is the compiler's.
        for scale in _training_scales(setup.train_set):
            _first_patch(net, setup.info, setup.train_set, scale, device)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: train eagerly rather than not at all
        net._compiled_call_impl = None  # undo nn.Module.compile (it only sets this attribute)
        log.warning("train.compile: torch.compile could not compile %s (%s); training without compilation",
                    type(net).__name__, _first_line(exc)[:300])
        return
    log.info("train.compile: the network runs through torch.compile (mode %s)", opt_train.compile_mode)


def _run(setup: TrainingSetup, accelerator: Any, root: Path, state: Path | None, log: Any,
         progress: bool) -> TrainResult:
    from tqdm import tqdm

    options, opt_train = setup.options, setup.options.train
    is_main = accelerator.is_main_process
    if is_main:
        (root / "options.yml").write_text(dump_options(options), encoding="utf-8")
    scalars = Scalars(root / "tb_logger" if is_main and options.logger.use_tb_logger else None)
    device = accelerator.device

    net = setup.net
    channels_last = opt_train.channels_last if opt_train.channels_last is not None else setup.info.channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        chosen = "train.channels_last" if opt_train.channels_last else f"{type(net).__name__} declares it faster"
        log.info("the network runs on channels-last tensors (%s)", chosen)
    ema = None
    if opt_train.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(opt_train.ema_decay), use_buffers=True)
    optimizer = build_optimizer(opt_train.optim_g, [p for p in net.parameters() if p.requires_grad], device=device)
    scheduler = build_scheduler(opt_train.scheduler, optimizer)
    if opt_train.compile:
        _compile_in_place(net, setup, device, log)
    net, optimizer = accelerator.prepare(net, optimizer)
    if ema is not None:
        ema.to(device)
        # The counter decides "copy or average" on every update; on the host that costs no device sync.
        ema.n_averaged = ema.n_averaged.cpu()
    counters = TrainerCounters()
    if state is not None:
        counters = load_training_state(accelerator, state, ema=ema, scheduler=scheduler)
        if ema is not None:
            ema.n_averaged = ema.n_averaged.cpu()
        log.info("resumed from %s at iteration %d", state, counters.iteration)

    train_block = options.datasets["train"]
    workers = train_block.num_worker_per_gpu
    sampler = TrainBatchSampler(
        len(setup.train_set), train_block.batch_size_per_gpu, options.manual_seed,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index,
        enlarge_ratio=train_block.dataset_enlarge_ratio, scales=setup.train_set.scales,
        start_batch=counters.iteration * opt_train.gradient_accumulation_steps,
    )
    pin = train_block.pin_memory if train_block.pin_memory is not None else device.type == "cuda"
    if workers > 0:
        single_threaded_opencv()  # before the workers fork (see single_threaded_worker)
    loader = DataLoader(
        setup.train_set, batch_sampler=sampler, num_workers=workers, pin_memory=pin,
        persistent_workers=train_block.persistent_workers and workers > 0,
        prefetch_factor=train_block.prefetch_factor if workers > 0 else None,
        worker_init_fn=single_threaded_worker if workers > 0 else None,
        generator=torch.Generator(),  # keeps the loader from consuming the global RNG
    )
    model = _unwrap(accelerator, net)
    if is_main:
        log.info("task %s; network %s, %s parameters (%s trainable); %d training images; %d process(es) on %s",
                 setup.task.describe(), options.network_g.get("type"), f"{count_parameters(model):,}",
                 f"{count_parameters(model, trainable_only=True):,}", len(setup.train_set),
                 accelerator.num_processes, device)
        for line in _describe_sharing(model):
            log.info(line)

    base_lrs = [group["lr"] for group in optimizer.param_groups]
    last_val: dict[str, float] = {}
    running = RunningLoss(device, counters.iteration + 1)
    bar = tqdm(total=opt_train.total_iter, initial=counters.iteration, desc=options.name, unit="it",
               disable=not (progress and is_main), dynamic_ncols=True)
    net.train()
    batches = iter(loader)
    tick = time.time()
    while counters.iteration < opt_train.total_iter:
        batch = batch_to_device(next(batches), device)
        lq, gt, guide = batch["lq"], batch["gt"], batch.get("guide")
        if channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with accelerator.accumulate(net):
            output = call_network(net, lq, scale=int(batch["scale"][0]), info=setup.info, guide=guide)
            loss = _pixel_loss(setup.loss_fn, output, gt, opt_train.sequence_loss_weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients and opt_train.grad_clip:
                accelerator.clip_grad_norm_(net.parameters(), opt_train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        running.add(loss)
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
        last = it == opt_train.total_iter
        logging_now = it % options.logger.print_freq == 0 or last
        validating = bool(setup.val_sets) and (it % options.val.val_freq == 0 or last)
        saving = it % options.logger.save_checkpoint_freq == 0 or last

        if logging_now or validating or saving:
            mean_loss, steps, since = running.read(accelerator, it)
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(
                    f"the loss became {mean_loss} between iterations {since} and {it} "
                    f"(network {options.network_g.get('type')}, mixed_precision {opt_train.mixed_precision}). "
                    "Lower train.optim_g.lr, set train.grad_clip, or use bf16 instead of fp16. "
                    "No checkpoint was written from the diverged weights."
                )
        if logging_now:
            elapsed = time.time() - tick
            rate = steps / max(elapsed, 1e-9) / opt_train.gradient_accumulation_steps
            lr = optimizer.param_groups[0]["lr"]
            eta = (opt_train.total_iter - it) / max(rate, 1e-9)
            log.info("[iter %d/%d] l_pix %.4e  lr %.3e  %.2f it/s  eta %s", it, opt_train.total_iter, mean_loss,
                     lr, rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
            scalars.add("train/l_pix", mean_loss, it)
            scalars.add("train/lr", lr, it)
            bar.set_postfix(l_pix=f"{mean_loss:.3e}", lr=f"{lr:.1e}")
            tick = time.time()
        if validating:
            last_val = _validate(options, setup.val_sets, ema or _unwrap(accelerator, net), accelerator,
                                 it, counters, log, scalars, root, progress)
            net.train()
        if saving:
            _save_checkpoint(options, accelerator, net, ema, scheduler, counters, root)
    bar.close()
    scalars.close()
    final = root / "models" / ("net_g_ema_latest.safetensors" if ema is not None else "net_g_latest.safetensors")
    if is_main:
        log.info("done: %d iterations; weights in %s", counters.iteration, final)
    return TrainResult(root, counters.iteration, final, last_val)


def _validate(options: Options, val_sets: dict[str, Any], model: nn.Module, accelerator: Any, iteration: int,
              counters: TrainerCounters, log: Any, scalars: Scalars, root: Path, progress: bool) -> dict[str, float]:
    from accelerate.utils import gather_object

    model = model.module if hasattr(model, "n_averaged") else model  # AveragedModel wraps the EMA net
    summary: dict[str, float] = {}
    for key, (block, dataset, metrics) in val_sets.items():
        name = block.name or key
        save_dir = root / "visualization" / name / f"{iteration:08d}" if options.val.save_img else None
        results: EvalResults = evaluate(
            {"net": model}, dataset, dataset.task, metrics, dataset_name=name, device=accelerator.device,
            quantize=options.val.quantize, tile=options.val.tile, tile_overlap=options.val.tile_overlap,
            save_dir=save_dir if accelerator.is_main_process else None, progress=options.val.pbar and progress,
            rank=accelerator.process_index, world_size=accelerator.num_processes, gather=gather_object,
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
        try:
            for label, model in exported.items():
                path = save_weights(models / f"{label}_{it}.safetensors", model.state_dict(),
                                    network=options.network_g, task=task_options,
                                    extra={"experiment": options.name})  # names its test reports
                shutil.copyfile(path, models / f".{label}_latest.tmp")
                (models / f".{label}_latest.tmp").replace(models / f"{label}_latest.safetensors")
        except OSError as exc:
            for leftover in models.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            raise CheckpointError(f"could not write the weights of iteration {it} in {models}: "
                                  f"{'the disk is full' if full else exc}. The last training state is intact; "
                                  "free space and resume with --resume.") from None
    save_training_state(accelerator, root / "training_states", counters, ema=ema, scheduler=scheduler)
    if accelerator.is_main_process:
        prune_states(root / "training_states", options.logger.keep_checkpoints)


def iterations_done(root: Path) -> int:
    """The iteration of the newest complete training state of a run folder (0 if none)."""
    state = latest_complete_state(root / "training_states")
    return int(state.name) if state is not None else 0
