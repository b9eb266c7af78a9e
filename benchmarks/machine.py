"""The machine a benchmark ran on, named the way BENCHMARKS.md records it."""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_description() -> str:
    """CPU model and count, e.g. ``AMD EPYC, 2 CPUs``."""
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} CPUs"
