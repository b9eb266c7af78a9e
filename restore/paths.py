"""Names that become paths: one component each, and output paths that stay under their root.

Experiment names, test-set names and output stems come from option files, command lines and file
names. None of them may climb out of the folder it is written into (``..``, ``a/../../x``) or
name the folder itself (``''``, ``.``); every command turns such names into paths only here.
"""

from __future__ import annotations

import os
from pathlib import Path

from restore.errors import OptionError

_SEPARATORS = tuple({"/", "\\", os.sep, *(os.altsep or "")})


def path_component(name: str, what: str) -> str:
    """`name` if it is usable as one file or folder name, else an OptionError naming `what`."""
    if not isinstance(name, str) or not name.strip():
        raise OptionError(f"{what}: must be a non-empty name, got {name!r}.")
    if name in (".", "..") or any(sep in name for sep in _SEPARATORS) or "\x00" in name:
        raise OptionError(
            f"{what}: {name!r} is not a plain name; it is used as a folder or file name, so it cannot be "
            "'.', '..' or contain a path separator."
        )
    return name


def inside(root: str | os.PathLike, *parts: str, what: str = "output path") -> Path:
    """``root / parts`` after checking that the (normalised) result lies strictly under `root`."""
    root_path = Path(os.path.normpath(os.path.abspath(root)))
    target = Path(os.path.normpath(os.path.abspath(os.path.join(root_path, *parts))))
    given = os.path.join(*parts) if parts else ""
    if target == root_path:
        raise OptionError(f"{what}: {given!r} names {root_path} itself, not a folder or file inside it.")
    if root_path not in target.parents:
        raise OptionError(f"{what}: {given!r} would be written to {target}, outside {root_path}.")
    return Path(root, *parts)
