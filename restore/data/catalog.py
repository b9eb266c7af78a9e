"""Checking that the data an option file names exist, with preparation hints from the catalog.

``restore/data/catalog.yml`` maps a dataset ``name`` (as in ``datasets.<phase>.name``) to where
it comes from and the commands that prepare it; a missing path is reported with them before
any work starts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from restore.errors import DataError

CATALOG = Path(__file__).with_name("catalog.yml")
SOURCE_SCHEMES = ("skimage:",)  # sources that are not paths


@cache
def catalog() -> dict[str, Any]:
    if not CATALOG.is_file():
        return {}
    return yaml.safe_load(CATALOG.read_text(encoding="utf-8")) or {}


def _entry(name: str) -> dict[str, Any] | None:
    entries = catalog()
    return entries.get(name) or next((v for k, v in entries.items() if k.lower() == name.lower()), None)


def preparation_hint(name: str) -> str:
    entry = _entry(name)
    if not entry:
        return ""
    parts = [f"{name}: {entry.get('description', '').strip()}".rstrip(": ")]
    if entry.get("source"):
        parts.append(f"Download: {entry['source']}")
    if entry.get("prepare"):
        parts.append("Prepare it with: " + " && ".join(entry["prepare"]))
    return " ".join(p if p.endswith(".") else p + "." for p in parts) + " See datasets/README.md."


def check_paths(datasets: dict[str, Any], phases: tuple[str, ...] | None = None) -> None:
    """Raise a DataError for the first dataset path (GT, LQ, meta info) that does not exist."""
    for key, block in datasets.items():
        if phases is not None and key.split("_")[0] not in phases:
            continue
        kwargs = block.dataset_kwargs()
        for field in ("dataroot_gt", "dataroot_lq", "dataroot_guide", "meta_info_file"):
            value = kwargs.get(field)
            if value is None or str(value).startswith(SOURCE_SCHEMES) or Path(value).exists():
                continue
            hint = preparation_hint(block.name) if block.name else ""
            raise DataError(
                f"datasets.{key}.{field}: {value} does not exist (paths are relative to the directory you run "
                f"`restore` from, usually the project root). {hint}".strip()
            )
