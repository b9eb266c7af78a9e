"""The option-file schema: BasicSR's key names, typed and closed (unknown keys are errors).

Blocks that configure a registered object (``task``, ``network_g``, ``optim_g``, ``scheduler``,
``pixel_opt``, metrics, dataset kwargs) are kept as mappings here and checked against the
object's signature in `restore.options.check_registered_blocks`.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from restore.errors import OptionError
from restore.paths import path_component

DATASET_PHASE = re.compile(r"^(train|val|test)(_\w+)?$")
# Upper bounds that no real recipe reaches (BasicSR's longest schedules are ~1e6 iterations); values
# beyond them are typos such as 1e23 that would otherwise be accepted and never finish.
MAX_ITERATIONS = 10**9
MAX_TILE = 100_000  # pixels along a tile's side: far beyond any tile that fits in memory
MAX_BATCH = 4096


def _plain_name(value: str, what: str) -> str:
    try:
        return path_component(value, what)
    except OptionError as exc:  # pydantic reports ValueError with the key path
        raise ValueError(str(exc).split(": ", 1)[1]) from None


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts_bool(arg) for arg in typing.get_args(annotation))
    return False


class NoBoolNumbers(BaseModel):
    """Refuses ``true``/``false`` for number fields: pydantic would read them as 1 and 0."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and not _accepts_bool(field.annotation):
            raise ValueError(f"expected a number, not the boolean {str(value).lower()}")
        return value


class Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class IOBackend(Strict):
    type: Literal["disk", "lmdb", "auto"] = "auto"


class DatasetOptions(NoBoolNumbers):
    """Loader settings (core) plus the dataset class's own keyword arguments (extra keys)."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    type: str = "PairedImageDataset"
    batch_size_per_gpu: int = Field(16, ge=1, le=MAX_BATCH)
    num_worker_per_gpu: int = Field(2, ge=0, le=256)
    dataset_enlarge_ratio: int = Field(1, ge=1, le=10_000)
    pin_memory: bool | None = Field(None, description="page-locked batches; default: on when training on CUDA")
    persistent_workers: bool = Field(True, description="keep data workers alive between epochs")
    prefetch_factor: int | None = Field(None, ge=1, le=64, description="batches each worker loads ahead")
    scale: int | None = Field(None, ge=1, le=64, description="val/test: evaluate at this scale (multi-scale nets)")
    prefetch_mode: None = Field(None, description="accepted for BasicSR files; Accelerate handles prefetching")

    @field_validator("name")
    @classmethod
    def _name_is_plain(cls, value: str) -> str:
        return _plain_name(value, "name") if value else value

    def dataset_kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PathOptions(Strict):
    pretrain_network_g: str | None = None
    param_key_g: Literal["params", "params_ema"] | None = None
    strict_load_g: bool = True
    resume_state: str | None = None
    experiments_root: str = "experiments"
    results_root: str = "results"


class TrainOptions(Strict):
    total_iter: int = Field(..., ge=1, le=MAX_ITERATIONS, description="optimizer updates (not micro-batches)")
    optim_g: dict[str, Any]
    scheduler: dict[str, Any] | None = None
    pixel_opt: dict[str, Any]
    warmup_iter: int = Field(-1, ge=-1, le=MAX_ITERATIONS, description="linear LR warm-up; -1 or 0: none")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(None, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_accumulation_steps: int = Field(1, ge=1, le=MAX_BATCH)
    sequence_loss_weights: list[float] | None = None
    channels_last: bool | None = Field(None, description="run the network on channels-last (NHWC) tensors; "
                                       "default: as the arch declares (ArchInfo.channels_last)")
    compile: bool = Field(False, description="torch.compile the network (falls back to eager, saying why)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"


class ValOptions(Strict):
    val_freq: int = Field(5000, ge=1, le=MAX_ITERATIONS)
    save_img: bool = False
    quantize: Literal["round", "truncate"] = "round"
    metrics: dict[str, dict[str, Any]] | None = None
    tile: int | None = Field(None, ge=8, le=MAX_TILE)
    tile_overlap: int = Field(32, ge=0, le=MAX_TILE)
    pbar: bool = True
    suffix: str | None = None


class WandbOptions(Strict):
    project: None = None
    resume_id: None = None


class LoggerOptions(Strict):
    print_freq: int = Field(100, ge=1, le=MAX_ITERATIONS)
    save_checkpoint_freq: int = Field(5000, ge=1, le=MAX_ITERATIONS)
    use_tb_logger: bool = True
    keep_checkpoints: int = Field(3, ge=1, le=10_000, description="training states kept on disk (newest)")
    wandb: WandbOptions | None = Field(None, description="accepted for BasicSR files; W&B is not supported")


class Options(Strict):
    name: str
    task: dict[str, Any]
    scale: int | None = Field(None, ge=1, le=64)
    manual_seed: int = Field(0, ge=0, lt=2**32, description="numpy and torch seeds take 0 .. 2**32-1")
    datasets: dict[str, DatasetOptions] = Field(default_factory=dict)
    network_g: dict[str, Any]
    path: PathOptions = Field(default_factory=PathOptions)
    train: TrainOptions | None = None
    val: ValOptions = Field(default_factory=ValOptions)
    logger: LoggerOptions = Field(default_factory=LoggerOptions)
    find_unused_parameters: bool = False
    max_image_pixels: int = Field(100_000_000, ge=0, description="refuse images with more pixels, read from their "
                                  "header before decoding (--max-pixels); 0: no limit")
    # BasicSR keys accepted so existing files load; they have no effect here.
    model_type: str | None = None
    num_gpu: int | str | None = None
    dist_params: dict[str, Any] | None = None
    is_train: bool | None = None

    @field_validator("name")
    @classmethod
    def _name_is_plain(cls, value: str) -> str:
        return _plain_name(value, "name")

    @field_validator("datasets")
    @classmethod
    def _phases(cls, value: dict[str, DatasetOptions]) -> dict[str, DatasetOptions]:
        for key in value:
            if not DATASET_PHASE.match(key):
                raise ValueError(f"dataset key '{key}' must be train, val, val_<x>, test or test_<x>")
        return value

    @model_validator(mode="after")
    def _scale_agrees(self) -> Options:
        task_scale = self.task.get("scale")
        if self.scale is not None and task_scale is not None and task_scale != self.scale:
            raise ValueError(f"scale is {self.scale} but task.scale is {task_scale}")
        return self

    def eval_sets(self, phase: Literal["val", "test"]) -> dict[str, DatasetOptions]:
        """The dataset blocks of a phase (``val``, ``val_2``...), in file order."""
        return {k: v for k, v in self.datasets.items() if k.split("_")[0] == phase}
