"""How many CPU threads the training step and the data workers use.

On a machine shared with other work, torch's default (one intra-op thread per core) makes every op
wait for threads that are not scheduled: the README's quick start ran about 8x slower with two
threads than with one on a loaded 2-core machine. Unless told otherwise (``--threads`` or
``OMP_NUM_THREADS``), a run therefore uses the cores the load average leaves free, and data workers
one thread each (they are already one process per core).
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op threads and return (threads, why) for the log."""
    import torch

    cpus = available_cpus()
    if requested is not None:
        threads, why = requested, "--threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads, why = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = max(1, min(torch.get_num_threads(), round(cpus - load)))
        why = f"{cpus} CPU(s), load average {load:.1f}"
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads(), why


def single_threaded_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker process. OpenCV's is set in the
    parent by `single_threaded_opencv` before the workers start: resizing OpenCV's thread pool in a
    forked child can deadlock on the parent's pool (seen: a worker stuck in pthread_cond_destroy)."""
    import torch

    torch.set_num_threads(1)


def single_threaded_opencv() -> None:
    """One OpenCV thread in this process and the data workers it forks (they decode in parallel)."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)
