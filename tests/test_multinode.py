"""Training on several machines: two torchrun "nodes" on this machine, joined through torchrun's c10d
rendezvous on the loopback address (gloo), train exactly like two processes on one node, and only
global rank 0 writes the experiment folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, tiny_sisr_options

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # `torchrun`, whether or not its script is on PATH


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(path, name: str) -> list[str]:
    return ["-m", "restore", "train", "-opt", str(path), "--set", f"name={name}", "--no-progress"]


def test_two_nodes_train_to_the_weights_of_two_processes_on_one_node(tmp_path, write_options):
    options = tiny_sisr_options(tmp_path, train__total_iter=20, datasets__train__batch_size_per_gpu=2,
                                logger__save_checkpoint_freq=20)
    path = write_options(options)
    one_node = subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node", "2", *_train(path, "one_node")],
                              cwd=REPO, capture_output=True, text=True, timeout=900, env=ENV)
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank),
             "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "restore-multinode-test",
             *_train(path, "two_nodes")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        for rank in (0, 1)
    ]
    logs = []
    try:
        for node in nodes:
            logs.append(node.communicate(timeout=900)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-3000:]
    both = "".join(logs)
    assert both.count("2 process(es)") == 1, "exactly one process (global rank 0) logs the run"

    run = tmp_path / "experiments" / "two_nodes"
    assert len(list((run / "logs").glob("train_*.log"))) == 1
    state = run / "training_states" / "00000020"
    assert (state / "manifest.json").is_file()
    # Accelerate keeps each process's RNG state, named by its global index: one per node here.
    assert sorted(p.name for p in state.glob("random_states_*.pkl")) == ["random_states_0.pkl",
                                                                         "random_states_1.pkl"]
    a = load_file(str(tmp_path / "experiments" / "one_node" / "models" / "net_g_20.safetensors"))
    b = load_file(str(run / "models" / "net_g_20.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # same ranks, same batches, same gloo all-reduce: the same weights
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=f"{key} differs")
