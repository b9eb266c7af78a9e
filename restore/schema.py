"""The option-file schema: BasicSR's key names, typed and closed (unknown keys are errors).

Blocks that configure a registered object (``task``, ``network_g``, ``optim_g``, ``scheduler``,
``pixel_opt``, metrics, dataset kwargs) are kept as mappings here and checked against the
object's signature in `restore.options.check_registered_blocks`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATASET_PHASE = re.compile(r"^(train|val|test)(_\w+)?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class IOBackend(Strict):
    type: Literal["disk", "lmdb", "auto"] = "auto"


class DatasetOptions(BaseModel):
    """Loader settings (core) plus the dataset class's own keyword arguments (extra keys)."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    type: str = "PairedImageDataset"
    batch_size_per_gpu: int = Field(16, ge=1)
    num_worker_per_gpu: int = Field(2, ge=0)
    dataset_enlarge_ratio: int = Field(1, ge=1)
    pin_memory: bool = False
    scale: int | None = Field(None, ge=1, description="val/test: evaluate at this scale (multi-scale nets)")
    prefetch_mode: None = Field(None, description="accepted for BasicSR files; Accelerate handles prefetching")

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
    total_iter: int = Field(..., ge=1, description="optimizer updates (not micro-batches)")
    optim_g: dict[str, Any]
    scheduler: dict[str, Any] | None = None
    pixel_opt: dict[str, Any]
    warmup_iter: int = -1
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(None, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_accumulation_steps: int = Field(1, ge=1)
    sequence_loss_weights: list[float] | None = None


class ValOptions(Strict):
    val_freq: int = Field(5000, ge=1)
    save_img: bool = False
    quantize: Literal["round", "truncate"] = "round"
    metrics: dict[str, dict[str, Any]] | None = None
    tile: int | None = Field(None, ge=8)
    tile_overlap: int = Field(32, ge=0)
    pbar: bool = True
    suffix: str | None = None


class WandbOptions(Strict):
    project: None = None
    resume_id: None = None


class LoggerOptions(Strict):
    print_freq: int = Field(100, ge=1)
    save_checkpoint_freq: int = Field(5000, ge=1)
    use_tb_logger: bool = True
    keep_checkpoints: int = Field(3, ge=1, description="training states kept on disk (newest)")
    wandb: WandbOptions | None = Field(None, description="accepted for BasicSR files; W&B is not supported")


class Options(Strict):
    name: str
    task: dict[str, Any]
    scale: int | None = Field(None, ge=1)
    manual_seed: int = 0
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
