"""The public plugin API: everything a plugin (built-in or third-party) may import from `restore`.

A plugin is a module named by an entry point in the group ``restore.plugins``::

    [project.entry-points."restore.plugins"]
    my_plugin = "my_package.restore_plugin"

Importing that module registers its objects::

    from restore.api import register_arch, ArchInfo, SharingScheme, register_sharing

    @register_sharing(name="low_rank")
    class LowRankSharing(SharingScheme): ...

    @register_arch(info=ArchInfo(size_multiple=8))
    class MyNet(nn.Module): ...

A plugin's tests need nothing else either: `build_network`, `build_task`, `MetricSet`,
`save_weights`, `load_model` (a weights file that records its options -> ``(net, task)``) and
`load_weights_into` cover building, scoring, saving and reloading. Anything not exported here is
private to the core and may change without notice.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field  # constraints on option annotations: Annotated[int, Field(ge=1)]

from restore.archs import ArchInfo, arch_info, build_network, count_parameters, register_arch
from restore.build import build_task
from restore.build import load_pretrained as load_weights_into
from restore.build import model_from_checkpoint as load_model
from restore.checkpoint import save_weights
from restore.data.io import atomic_write_bytes, decode_image, list_files, read_array, write_image
from restore.errors import CheckpointError, DataError, OptionError, RestoreError
from restore.inference import pad_to_multiple
from restore.metrics import MetricSet, register_metric
from restore.registry import (
    ARCHS,
    CONVERTERS,
    DATASETS,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    READERS,
    SCHEDULERS,
    SHARING,
    TASKS,
    Entry,
    Registry,
)
from restore.report.render import Legend
from restore.sharing import (
    NoSharing,
    RecursiveSharing,
    SharedRef,
    SharingScheme,
    build_sharing,
    materialize,
    materialize_into,
    plain_layer,
    unshared_layers,
)
from restore.tasks import Display, Sample, Task, mod_crop, quantize_uint8, register_task
from restore.validation import call_with_options, check_options, option_path, types_from_defaults

API_VERSION = "1.0"

T = TypeVar("T")


def register_sharing(obj: T | None = None, *, name: str | None = None) -> Any:
    """Register a SharingScheme subclass (its `name` attribute is used when `name` is omitted)."""

    def add(cls: T) -> T:
        registered = name or getattr(cls, "name", cls.__name__)
        SHARING.register(cls, name=registered)
        if "name" not in vars(cls):  # describe() and logs report the name options use
            cls.name = registered
        return cls

    return add if obj is None else add(obj)


def register_dataset(obj: T | None = None, *, name: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    return DATASETS.register(obj, name=name, aliases=aliases)


def register_loss(obj: T | None = None, *, name: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    return LOSSES.register(obj, name=name, aliases=aliases)


def register_converter(obj: T | None = None, *, name: str | None = None) -> Any:
    """Register ``fn(obj, source) -> (state_dict, network_options[, task_options]) | None`` for
    `restore convert` (and for loading foreign ``.pth`` files anywhere).

    `obj` is what a safe ``torch.load`` (tensors, containers, numpy scalars) read from `source`;
    the converter returns None when the file is not the kind it knows.
    """
    return CONVERTERS.register(obj, name=name)


def register_reader(extension: str, reader: Any) -> Any:
    """Register `reader(path) -> HWC ndarray` for files ending in `extension` (with its dot)."""
    return READERS.register(reader, name=extension.lower())


__all__ = [
    "API_VERSION",
    "ARCHS", "CONVERTERS", "DATASETS", "LOSSES", "METRICS", "OPTIMIZERS", "READERS", "SCHEDULERS", "SHARING", "TASKS",
    "ArchInfo", "CheckpointError", "DataError", "Display", "Entry", "Field", "Legend", "MetricSet", "NoSharing",
    "OptionError", "RecursiveSharing", "Registry", "RestoreError", "Sample", "SharedRef", "SharingScheme", "Task",
    "arch_info", "atomic_write_bytes", "build_network", "build_sharing", "build_task", "call_with_options",
    "check_options", "count_parameters", "decode_image", "list_files", "load_model", "load_weights_into",
    "materialize", "materialize_into", "mod_crop", "option_path", "pad_to_multiple", "plain_layer", "quantize_uint8",
    "read_array",
    "register_arch", "register_converter", "register_dataset", "register_loss", "register_metric", "register_reader",
    "register_sharing", "register_task", "types_from_defaults", "save_weights", "unshared_layers", "write_image",
]
