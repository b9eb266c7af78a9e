"""Start-up: commands that only print import nothing heavy (timings are in benchmarks/bench_startup.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "basicsr", "torchvision", "cv2", "matplotlib", "fvcore", "accelerate", "tensorboard", "scipy",
         "restore_basicsr", "restore_ps", "restore_ups", "restore_tasks", "restore.builtins")


def _imported_by(argv: list[str]) -> tuple[int, list[str], str]:
    """Run `restore ARGV` in a fresh interpreter; (exit status, heavy modules it imported, output)."""
    code = ("import sys\nfrom restore.cli import main\n"
            "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as exc:\n    status = exc.code\n"
            f"print('IMPORTED', status, *[m for m in {HEAVY!r} if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1].split()
    assert last[0] == "IMPORTED", result.stdout
    return int(last[1]), last[2:], result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["test", "--help"], ["train", "--help"], ["plugins"],
                                  ["plugins", "--registry", "sharing"]])
def test_printing_commands_import_no_heavy_module(argv):
    status, heavy, output = _imported_by(argv)
    assert status == 0, output
    assert heavy == [], f"`restore {' '.join(argv)}` imported {heavy}"


def test_restore_plugins_lists_every_built_in_name_without_importing_a_plugin():
    _, heavy, output = _imported_by(["plugins"])
    assert heavy == []
    for name in ("DRRN_PS", "UPS_S", "SwinIR", "partial_filter", "unified_projection", "sisr", "psnr"):
        assert any(line.split()[:1] == [name] for line in output.splitlines()), name
    accepting = re.search(r"archs that accept `sharing` \((\d+) of (\d+)\)", output)
    assert accepting and int(accepting[1]) >= 8  # CARN, DRRN, SRFBN_S, their _PS variants, UPS, UPS_S
    assert "describe() of a default instance: {\"type\": \"recursive\", \"shared_slots\": 0}" in output
