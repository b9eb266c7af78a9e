"""benchmarks/gpu_check.sh stays runnable without a GPU: its --cpu --quick mode runs every step (both
training loops, latency, the released PS weights, two processes) with tiny sizes, and its tables say
what ran."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO, SHARED

pytestmark = pytest.mark.slow


def table_rows(output: str, title_start: str) -> dict[str, list[str]]:
    """First cell -> the other cells of the markdown table under the heading starting `title_start`."""
    section = output.split(f"### {title_start}", 1)[1].split("###", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_gpu_check_quick_cpu_mode_runs_every_step(tmp_path):
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--quick", "--keep", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=1500)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-3000:]

    train = table_rows(out, "Training")
    for loop in ("BasicSR fp32", "restore fp32", "restore bf16"):
        it_per_s, _, memory, loss, tflops, status = train[loop]
        assert status == "ok" and float(it_per_s) > 0 and "MiB" in memory and 0 < float(loss) < 1, (loop, train)
    compiled = train["restore bf16 + channels_last + compile"][-1]
    assert compiled == "ok" or compiled.startswith("skipped: this restore has no option"), compiled
    assert train["BasicSR fp32"][1] == "1.00x"
    assert (tmp_path / "experiments" / "gpu_check_1" / "models" / "net_g_4.safetensors").is_file()
    assert list((tmp_path / "basicsr" / "experiments" / "gpu_check_basicsr" / "models").glob("net_g_*.pth"))

    latency = re.findall(r"^\| (UPS|SwinIR_light) \| (fp32|bf16) \| ([0-9.]+) \| ([0-9.]+)x \|", out, re.M)
    assert sorted((model, precision) for model, precision, _, _ in latency) == [
        ("SwinIR_light", "bf16"), ("SwinIR_light", "fp32"), ("UPS", "bf16"), ("UPS", "fp32")]
    assert all(float(ms) > 0 for _, _, ms, _ in latency)

    ps = table_rows(out, "Released PS weights")
    if (SHARED / "weights" / "ps" / "srfbnspsx2.pth").is_file():
        cells = ps["ps_srfbn_x2 Set5"]
        assert cells[-1] == "ok" and abs(float(cells[0]) - 37.74) < 0.01  # the paper's Set5 x2 figure
    else:
        assert next(iter(ps.values()))[-1].startswith("skipped")

    two = table_rows(out, "Two processes")["2 processes, 1 device"]
    assert two[0] == "yes", two
    assert re.search(r"^\d+ of \d+ rows ok", out, re.M)
