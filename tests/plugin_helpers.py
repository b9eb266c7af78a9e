"""Installing a plugin package into a temporary target and running `restore` with it, as a user would."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_restore


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


def with_plugins(target: Path) -> dict[str, str]:
    """The environment of a process that sees the packages installed in `target`."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


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
