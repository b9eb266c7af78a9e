"""Installing a plugin package into a temporary target and running `restore` with it, as a user would."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_restore

# CONTRIBUTING.md's sharing layer before the scheme contract, verbatim: it computes its kernel
# inside forward() and exposes neither `weight` nor `as_plain_module()`.
SCALED_WITHOUT_WEIGHT = '''
import torch
import torch.nn.functional as F
from torch import nn

from restore.api import SharingScheme, register_sharing


class ScaledConv(nn.Module):
    """A conv whose kernel is a slot's shared kernel times this layer's per-output-channel scale."""

    def __init__(self, shared: nn.Conv2d) -> None:
        super().__init__()
        object.__setattr__(self, "shared", shared)  # owned by the scheme: not registered twice
        self.scale = nn.Parameter(torch.ones(shared.out_channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shared
        return F.conv2d(x, s.weight * self.scale, s.bias, s.stride, s.padding)


@register_sharing(name="scaled")
class ScaledSharing(SharingScheme):
    """One kernel per slot, scaled per layer and output channel."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = nn.ModuleDict()

    def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        key = slot.replace(".", "_")
        if key not in self.kernels:
            self.kernels[key] = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        return ScaledConv(self.kernels[key])
'''


def _can_build_without_isolation() -> bool:
    # setuptools >= 70.1 builds wheels itself; older ones need the `wheel` package
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        from setuptools import __version__
    except ImportError:
        return False
    major, minor, *_ = (int(part) if part.isdigit() else 0 for part in __version__.split("."))
    return (major, minor) >= (70, 1)


def pip_install(source: Path, target: Path, workdir: Path) -> Path:
    """``pip install --no-deps --target TARGET`` of a copy of `source` (the build leaves its files in
    the copy, not in the repository); returns `target`."""
    copy = workdir / f"src-{source.name}"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target)]
    if _can_build_without_isolation():  # offline and fast; otherwise pip fetches setuptools for the build
        command.append("--no-build-isolation")
    else:
        command.remove("--no-index")
    result = subprocess.run([*command, str(copy)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def with_plugins(*targets: Path) -> dict[str, str]:
    """The environment of a process that also sees the packages installed in `targets`."""
    return {"PYTHONPATH": os.pathsep.join([*map(str, targets), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_with(target: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m restore ARGS` in a fresh interpreter that sees the packages installed in `target`."""
    kwargs = {"cwd": cwd} if cwd else {}
    return run_restore(*args, env=with_plugins(target), **kwargs)


def run_python(target: Path, code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -c CODE ARGS` with the packages installed in `target`."""
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **with_plugins(target)}, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
