"""Option files: safe YAML, ``base:`` inheritance, ``--set`` overrides, validation with key paths.

Everything is checked before any work starts: the core schema (`restore.schema`) first, then
every block that names a registered object against that object's signature.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from restore.errors import OptionError, did_you_mean
from restore.schema import DatasetOptions, Options


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``2e-4`` as a float (YAML 1.1 wants ``2.0e-4``) and rejects duplicate keys."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            first = seen[key].start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first at line {first})", key_node.start_mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


# Anchors and aliases (&a / *a) are allowed, but a document may not expand to more values than this:
# nine levels of nine aliases ("billion laughs") parse into a tiny graph that explodes when copied.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node: yaml.Node, source: str, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for once every alias is written out (memoised per node)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise OptionError(f"{source}: an alias refers to the block that contains it (line "
                          f"{node.start_mark.line + 1}); option files cannot be recursive.")
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, source, sizes, open_nodes)
        if total > MAX_EXPANDED_NODES:
            raise OptionError(
                f"{source}: expands to more than {MAX_EXPANDED_NODES:,} values through YAML aliases (&anchor / "
                f"*alias, near line {node.start_mark.line + 1}); refused before using it. Write the values out or "
                "use `base:` inheritance instead."
            )
    open_nodes.discard(key)
    sizes[key] = total
    return total


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Safe YAML with the loader above; alias expansion is bounded before anything is built from it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, source, {}, set())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise OptionError(f"{source}: invalid YAML: {exc}".replace("\n", " ")) from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"{path}: option file not found.")
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionError(f"{path}: an option file must be a mapping of keys, got {type(data).__name__}.")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, anything else is replaced; ``~``
    over a block removes it (an inheriting file drops e.g. a test set it has no data for)."""
    merged = dict(base)
    for key, value in override.items():
        if value is None and isinstance(merged.get(key), Mapping):
            del merged[key]
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_with_bases(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An option file with its ``base:`` file(s) merged underneath (paths relative to the file)."""
    path = Path(path).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise OptionError(f"option files inherit from each other in a cycle: {cycle}")
    data = read_yaml_file(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = deep_merge(merged, read_with_bases(path.parent / base, (*_chain, path)))
    return deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values are YAML: ``200``, ``[2, 3]``, ``~``). A number
    steps into a list (``network_g.scales.0=2``); anything else into a block of keys. ``~`` over a
    block drops it, as in an inheriting option file."""
    for item in overrides:
        key_path, sep, raw = item.partition("=")
        if not sep or not key_path or "" in key_path.split("."):
            raise OptionError(f"--set {item!r}: expected key.path=value, e.g. --set train.total_iter=200")
        value = parse_yaml(raw, f"--set {key_path}")
        parts = key_path.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _step_into(node, part, ".".join(parts[:i]), key_path)
        _assign(node, parts[-1], value, ".".join(parts[:-1]), key_path)
    return data


def _list_index(node: list, part: str, where: str, key_path: str) -> int:
    if not part.isdigit():
        raise OptionError(f"--set {key_path}: {where} is a list; step into it with an index (0 to "
                          f"{len(node) - 1}), not '{part}'.")
    if int(part) >= len(node):
        raise OptionError(f"--set {key_path}: {where} has {len(node)} item(s), so index {part} does not exist "
                          f"(set the whole list instead: --set {where}=[...]).")
    return int(part)


def _step_into(node: Any, part: str, where: str, key_path: str) -> Any:
    """The block or list below `node` at `part`, created as a block when absent."""
    here = f"{where}.{part}" if where else part
    slot: Any = _list_index(node, part, where, key_path) if isinstance(node, list) else part
    child = node[slot] if isinstance(node, list) else node.get(part)
    if isinstance(child, (dict, list)):
        return child
    if child is not None:
        raise OptionError(f"--set {key_path}: {here} is a value ({child!r}), not a block of keys.")
    node[slot] = {}
    return node[slot]


def _assign(node: Any, last: str, value: Any, where: str, key_path: str) -> None:
    if isinstance(node, list):
        node[_list_index(node, last, where, key_path)] = value
    elif value is None and isinstance(node.get(last), Mapping):  # `--set datasets.val=~` drops the block
        del node[last]
    else:
        node[last] = value


# -- validation -----------------------------------------------------------------------------------


def _child_model(annotation: Any, step: Any) -> Any:
    """The schema type one step below `annotation` along a validation-error location."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _child_model(arg, step)
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(step)
        return field.annotation if field else None
    if origin is dict:
        return typing.get_args(annotation)[1]
    return None


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    annotation: Any = Options
    for step in loc:
        annotation = _child_model(annotation, step)
        if annotation is None:
            return []
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _describe_error(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        return f"{path}: unknown key.{did_you_mean(str(key), _known_keys(loc[:-1]))}"
    if kind == "missing":
        return f"{path}: missing required key."
    got = err.get("input")
    message = str(err["msg"]).removeprefix("Value error, ").rstrip(".")
    return f"{path}: {message}" + ("." if kind == "value_error" else f" (got {got!r}).")


def validate(data: Mapping[str, Any], source: str = "options") -> Options:
    """The schema-checked options; errors name every bad key path."""
    try:
        return Options.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(_describe_error(e) for e in exc.errors())
        raise OptionError(f"{source}: {problems}") from None


def load_options(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Options:
    """Read, inherit, override and validate an option file."""
    data = apply_overrides(read_with_bases(path), overrides)
    return validate(data, str(path))


def dump_options(options: Options) -> str:
    """The resolved options as YAML (loadable again with `load_options`)."""
    data = options.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def check_registered_blocks(options: Options) -> None:
    """Build every object the option file names (task, network, loss, optimizer, scheduler,
    metrics) and check dataset blocks against their classes (and for guide images when the
    network is guided), without reading any data."""
    from restore.archs import arch_info
    from restore.build import build_loss, build_optimizer, build_scheduler, build_task, network_for_task
    from restore.metrics import MetricSet
    from restore.registry import DATASETS
    from restore.validation import check_options

    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    guided = arch_info(net).guided
    for key, block in options.datasets.items():
        kwargs = block.dataset_kwargs()
        check_options(DATASETS.get(block.type, f"datasets.{key}.type"), kwargs, f"datasets.{key}",
                      provided=dataset_provided_args(), sibling_keys=tuple(DatasetOptions.model_fields))
        if guided and kwargs.get("dataroot_guide") is None:
            raise OptionError(f"datasets.{key}.dataroot_guide: missing; {options.network_g['type']} is a guided "
                              "network and needs the guide images (e.g. the RGB photos of the depth maps) beside "
                              "every dataset.")
    MetricSet(options.val.metrics if options.val.metrics is not None else task.default_metrics())
    if options.train is not None:
        build_loss(options.train.pixel_opt)
        optimizer = build_optimizer(options.train.optim_g, [p for p in net.parameters() if p.requires_grad])
        build_scheduler(options.train.scheduler, optimizer)


def dataset_provided_args() -> dict[str, Any]:
    """Keyword arguments the core gives every dataset class itself (not settable from files)."""
    return {"task": None, "phase": None, "seed": None}

