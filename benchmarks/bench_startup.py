"""Start-up cost of `restore` commands: CPU and wall seconds of fresh processes, median of N.

Measures ``restore --help``, ``restore plugins``, ``restore test --help``,
``python -c "import restore.api"`` (the floor of any command that builds a network) and building a
small DRRN_PS from its registered name (what every command that runs a network starts with) for the
current tree and, with ``--baseline-rev REV``, for that commit extracted into a temporary folder
(``git archive``) and run from there with the same interpreter, in the same run: the two trees
alternate within every round, so machine load affects both alike. CPU = user + system time of the
child process (``os.wait4``).

    python benchmarks/bench_startup.py [--rounds 7] [--baseline-rev 5948f78]

Both trees use the entry points of the installed ``restore`` distribution (the current tree's);
the script says so when the baseline's pyproject.toml declares different ones.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {  # label: (arguments after the interpreter, goal as (measure, seconds) or None)
    "restore --help": (["-m", "restore", "--help"], ("wall", 0.5)),
    "restore plugins": (["-m", "restore", "plugins"], ("CPU", 2.0)),
    "restore test --help": (["-m", "restore", "test", "--help"], None),
    "import restore.api": (["-c", "import restore.api"], None),
    "build DRRN_PS (one lookup)": (["-c", "from restore.api import build_network; "
                                    "build_network({'type': 'DRRN_PS', 'num_features': 8}, scale=2)"], None),
}


def run_once(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, exit status) of one fresh interpreter."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, wall, proc.returncode


def extract(rev: str, folder: Path) -> str:
    """Write the tree of `rev` into `folder`; returns the short commit id."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit


def entry_points(pyproject: Path) -> str:
    text = pyproject.read_text()
    section = re.search(r'\[project\.entry-points\."restore\.plugins"\]\n(.*?)(?:\n\[|\Z)', text, flags=re.S)
    return "\n".join(line for line in (section[1] if section else "").splitlines() if "=" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="fresh processes per command and tree (median)")
    parser.add_argument("--baseline-rev", metavar="REV", help="also measure this commit (e.g. 5948f78)")
    args = parser.parse_args()

    base_env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base_env.pop("PYTHONPATH", None)
    trees = {"current": (REPO, base_env)}
    with tempfile.TemporaryDirectory(prefix="restore-baseline-") as tmp:
        if args.baseline_rev:
            folder = Path(tmp)
            commit = extract(args.baseline_rev, folder)
            if entry_points(folder / "pyproject.toml") != entry_points(REPO / "pyproject.toml"):
                print(f"note: {commit} declares other entry points than the installed distribution; the installed "
                      "ones are used for both trees")
            env = {**base_env, "PYTHONPATH": f"{folder}{os.pathsep}{folder / 'plugins'}"}
            trees = {f"baseline {commit}": (folder, env), **trees}

        load_before = os.getloadavg()
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        statuses: dict[tuple[str, str], set[int]] = {}
        for _ in range(args.rounds):
            for label, (argv, _) in COMMANDS.items():
                for tree, (cwd, env) in trees.items():
                    cpu, wall, status = run_once(argv, cwd, env)
                    samples.setdefault((tree, label), []).append((cpu, wall))
                    statuses.setdefault((tree, label), set()).add(status)
        load_after = os.getloadavg()

    print(f"machine: {cpu_description()}; Python {sys.version.split()[0]}; OMP_NUM_THREADS=1; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; median of {args.rounds} fresh processes, trees "
          "alternating within each round\n")
    names = list(trees)
    header = "| command | " + " | ".join(f"{t} CPU s | {t} wall s" for t in names)
    if len(names) == 2:
        header += " | CPU ratio (current / baseline)"
    print(header + " | goal | met? |")
    print("|---|" + "---:|---:|" * len(names) + ("---:|" if len(names) == 2 else "") + "---|---|")
    for label, (_, goal) in COMMANDS.items():
        medians = {t: (statistics.median(c for c, _ in samples[(t, label)]),
                       statistics.median(w for _, w in samples[(t, label)])) for t in names}
        row = f"| `{label}` | " + " | ".join(f"{medians[t][0]:.2f} | {medians[t][1]:.2f}" for t in names)
        if len(names) == 2:
            row += f" | {medians['current'][0] / medians[names[0]][0]:.2f}x"
        if goal is None:
            row += " | - | - |"
        else:
            measure, limit = goal
            value = medians["current"][0 if measure == "CPU" else 1]
            row += f" | {measure} < {limit} s | {'met' if value < limit else 'not met'} ({value:.2f} s) |"
        print(row)
    failed = {key: codes for key, codes in statuses.items() if codes != {0}}
    for (tree, label), codes in failed.items():
        print(f"\nnote: `{label}` exited with {sorted(codes)} in the {tree} tree")


if __name__ == "__main__":
    main()
