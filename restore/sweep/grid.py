"""Sweep definitions: the ``sweep:`` block and ``--grid`` axes, expanded into named cells.

A sweep is an option file (the base, with ``base:`` inheritance and ``--set`` as usual) plus grid
axes. An axis is a key path and a list of values; the cells are the product of the axes, or the
union of several products when ``sweep.grid`` is a list of mappings. A value that is a mapping
sets several keys under the axis's path at once (``network_g: [{type: CARN, gamma: ~}, {gamma:
6/9}]``); inside it ``~`` removes a key the base sets. Each cell is one complete option mapping
with its own experiment name: the base name followed by the cell's values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from restore.errors import OptionError, RestoreError, did_you_mean
from restore.options import apply_overrides, parse_yaml, read_with_bases, validate
from restore.paths import path_component
from restore.schema import Options

SEED_KEY = "manual_seed"  # the axis over which plots show the spread rather than separate points
MAX_NAME = 120  # longer cell names are shortened to a prefix and a hash of the values


class SweepSettings(BaseModel):
    """The ``sweep:`` block of an option file."""

    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(
        default_factory=dict, description="key path -> values (one product), or a list of such products (union)")
    metric: str | None = Field(None, description="'<test set>/<metric>' for the plots (default: the first one)")
    output_size: str = Field("1280x720", pattern=r"^[1-9][0-9]*x[1-9][0-9]*$",
                             description="output size WxH whose LR input the FLOPs are counted on")
    latency_size: int = Field(64, ge=8, description="height and width of the LR input timed for latency")
    latency_rounds: int = Field(3, ge=1, description="timed forward passes (the median is reported)")

    @property
    def output_hw(self) -> tuple[int, int]:
        width, height = self.output_size.split("x")
        return int(height), int(width)


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep."""

    name: str                    # experiment name: the base name and the cell's values
    values: dict[str, Any]       # key path -> value set by the grid (mapping values flattened)
    options: dict[str, Any]      # the complete option mapping of the run

    @property
    def configuration(self) -> str:
        """The cell's values without the seed: cells that differ only by seed share it."""
        return label({k: v for k, v in self.values.items() if k != SEED_KEY}) or "base"

    @property
    def seed(self) -> int:
        return int(self.options.get(SEED_KEY, 0))


@dataclass
class Sweep:
    """A validated sweep: its name (the base options' name), settings and cells."""

    name: str
    settings: SweepSettings
    cells: list[Cell]
    base: Options


def parse_grid_argument(text: str) -> tuple[str, list[Any]]:
    """``key.path=[v1, v2]`` (values are YAML, as for ``--set``) -> (key path, values)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"--grid {text!r}: expected key.path=[value, value, ...], e.g. manual_seed=[0,1,2].")
    values = parse_yaml(raw, f"--grid {key}")
    if not isinstance(values, list) or not values:
        raise OptionError(f"--grid {key}: expected a non-empty list such as [3/9, 6/9], got {raw!r}.")
    return key.strip(), values


def load_sweep(path: str | Path, grid: list[str] = (), overrides: list[str] = ()) -> Sweep:
    """Read the base options and the ``sweep:`` block, add ``--grid`` axes, validate every cell.

    Nothing is written: a bad value is reported naming the cell and the key before any run starts.
    """
    data = apply_overrides(read_with_bases(path), overrides)  # --set sweep.metric=... reaches the block too
    settings = _settings(data.pop("sweep", None), str(path))
    base = validate(data, str(path))
    products = [settings.grid] if isinstance(settings.grid, Mapping) else list(settings.grid)
    extra = dict(parse_grid_argument(g) for g in grid)
    products = [{**product, **extra} for product in products] if products else [extra]
    cells = _cells(data, base.name, products)
    return Sweep(base.name, settings, cells, base)


def _settings(block: Any, source: str) -> SweepSettings:
    if block is None:
        return SweepSettings()
    if not isinstance(block, Mapping):
        raise OptionError(f"{source}: sweep: expected a block of keys (grid, metric, ...), got {block!r}.")
    try:
        return SweepSettings.model_validate(dict(block))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in ("sweep", *err["loc"]))
            if err["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown key.{did_you_mean(str(err['loc'][-1]), SweepSettings.model_fields)}")
            else:
                problems.append(f"{where}: {err['msg']} (got {err.get('input')!r}).")
        raise OptionError(f"{source}: {'; '.join(problems)}") from None


def _cells(base: dict[str, Any], name: str, products: list[dict[str, list[Any]]]) -> list[Cell]:
    cells: dict[str, Cell] = {}
    for product in products:
        for key, values in product.items():
            if not isinstance(values, list) or not values:
                raise OptionError(f"sweep.grid.{key}: expected a non-empty list of values, got {values!r}.")
        for combination in itertools.product(*product.values()):
            assignment = dict(zip(product, combination, strict=True))
            values = flatten(assignment)
            cell_name = _cell_name(name, values)
            if cell_name in cells:
                if cells[cell_name].values != values:
                    raise OptionError(
                        f"sweep: cells {label(cells[cell_name].values)} and {label(values)} get the same experiment "
                        f"name {cell_name!r}; their values differ only in characters a folder name cannot hold.")
                continue  # the same cell from two products: run once
            options = json.loads(json.dumps(base))  # a deep copy of plain YAML data
            for key, value in assignment.items():
                _assign(options, key, value, cell_name)
            options["name"] = cell_name
            cells[cell_name] = Cell(cell_name, values, options)
    return list(cells.values())


def flatten(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """Axis values as key path -> value; a mapping value contributes one entry per key it sets."""
    flat: dict[str, Any] = {}
    for key, value in assignment.items():
        if isinstance(value, Mapping):
            flat.update(flatten({f"{key}.{k}": v for k, v in value.items()}))
        else:
            flat[key] = value
    return flat


def _assign(options: dict[str, Any], key: str, value: Any, cell: str) -> None:
    """Set `value` at the dotted `key`; a mapping value sets its keys there (``~`` removes one)."""
    *parents, last = key.split(".")
    node = options
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise OptionError(f"sweep cell {cell}: {'.'.join(parents[: i + 1])} is a value, not a block of keys, so "
                              f"the grid cannot set {key}.")
        node = child
    if isinstance(value, Mapping):
        target = node.get(last)
        if not isinstance(target, dict):
            target = node[last] = {}
        for k, v in value.items():
            if v is None:
                target.pop(k, None)
            else:
                _assign(target, k, v, cell)
    else:
        node[last] = value


def label(values: Mapping[str, Any]) -> str:
    """``gamma-6_9__manual_seed-0``: short key names (the last component, unless two clash) and
    values reduced to characters safe in a folder name. Keys set to ``~`` are left out."""
    shown = {k: v for k, v in values.items() if v is not None}
    short = [k.rsplit(".", 1)[-1] for k in shown]
    keys = [s if short.count(s) == 1 else k for k, s in zip(shown, short, strict=True)]
    return "__".join(f"{k}-{_text(v)}" for k, v in zip(keys, shown.values(), strict=True))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, (list, tuple)):
        value = "-".join(map(str, value))
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "_"


def _cell_name(base: str, values: Mapping[str, Any]) -> str:
    text = label(values)
    name = f"{base}__{text}" if text else base
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 12]}__{digest}"
    return path_component(name, f"sweep cell {text or base}")


def check_cells(sweep: Sweep) -> dict[str, Options]:
    """Every cell's options validated as ``restore train --dry-run`` does (schema, every registered
    block, data paths, test sets); the first bad cell is reported with its name and the key."""
    from restore.tester import test_sets
    from restore.trainer import train

    checked: dict[str, Options] = {}
    for cell in sweep.cells:
        where = f"sweep cell {cell.name}"
        try:
            options = validate(cell.options, where)
            train(options, dry_run=True)
            test_sets(options, None, None, "{}", None)
        except RestoreError as exc:
            text = str(exc)
            raise type(exc)(text if text.startswith(where) else f"{where}: {text}") from None
        checked[cell.name] = options
    return checked
