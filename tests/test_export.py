"""`restore export --materialize` never writes a file that does not load.

Plugins are real packages installed into temporary targets; export runs as a user runs it. A
scheme whose layers only say how they compute their weight (CONTRIBUTING.md's `scaled`, taken from
the file) exports through the generic path, and the file loads without the plugin. A layer that
cannot be materialised (the `scaled` example as CONTRIBUTING.md had it before the contract: no
`weight`) is refused, exit 2, naming the layer, with nothing written and nothing replaced.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from restore.api import build_network, count_parameters, load_model, save_weights
from restore.checkpoint import load_weights
from restore.cli import main
from tests.conftest import REPO
from tests.plugin_helpers import SCALED_WITHOUT_WEIGHT, pip_install, run_python, run_with

PYPROJECT = '''
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.0.1"

[project.entry-points."restore.plugins"]
{module} = "{module}"

[tool.setuptools]
packages = ["{module}"]
'''

# Random weights for DRRN with the `scaled` scheme (scales away from 1), and its output on a fixed input.
MAKE_WEIGHTS = '''
import sys
import numpy as np
import torch
from restore.api import build_network, save_weights

network = {"type": "DRRN", "num_units": 2, "num_features": 8, "scales": [2, 3], "sharing": {"type": "scaled"}}
net = build_network(network, in_chans=3, out_chans=3)
torch.manual_seed(0)
with torch.no_grad():
    for p in net.parameters():
        p.add_(0.2 * torch.randn_like(p))
save_weights(sys.argv[1], net.state_dict(), network=network, task={"type": "sisr", "scale": 3})
x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    np.save(sys.argv[2], net.eval()(x, scale=3).numpy())
'''


def contributing_scaled_scheme() -> str:
    """The first Python block of CONTRIBUTING.md: the `scaled` sharing layer, as documented."""
    block = re.findall(r"```python\n(.*?)```", (REPO / "CONTRIBUTING.md").read_text(), flags=re.S)[0]
    assert '@register_sharing(name="scaled")' in block
    return block


def install_scheme(tmp_path_factory: pytest.TempPathFactory, module: str, code: str) -> tuple:
    work = tmp_path_factory.mktemp(module)
    package = work / module
    (package / module).mkdir(parents=True)
    (package / module / "__init__.py").write_text(code)
    (package / "pyproject.toml").write_text(PYPROJECT.format(name=module.replace("_", "-"), module=module))
    target = pip_install(package, work / "target", work)
    run_python(target, MAKE_WEIGHTS, str(work / "shared.safetensors"), str(work / "expected.npy"))
    return target, work


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    return install_scheme(tmp_path_factory, "contributing_scaled", contributing_scaled_scheme())


@pytest.fixture(scope="module")
def scaled_without_weight(tmp_path_factory):
    return install_scheme(tmp_path_factory, "scaled_without_weight", textwrap.dedent(SCALED_WITHOUT_WEIGHT))


def export(installed: tuple, out: Path) -> subprocess.CompletedProcess:
    """`restore export` of the installed scheme's weights to `out`, with the scheme's package importable."""
    target, work = installed
    return run_with(target, "export", "--weights", str(work / "shared.safetensors"), "--materialize", str(out))


@pytest.mark.slow
def test_a_scheme_that_only_exposes_its_weights_exports_and_loads_without_the_plugin(scaled, tmp_path):
    out = tmp_path / "plain.safetensors"
    result = export(scaled, out)
    assert result.returncode == 0, result.stderr
    assert re.search(r"max \|output difference\| on a random 32x32 input \(x2, x3\): \d", result.stdout)
    # this process has no `scaled` plugin: the file must rebuild as DRRN with `sharing: none`
    net, task = load_model(out)
    assert net.sharing.describe() == {"type": "none"} and task.scale == 3
    # 2 units x 2 scales x 2 convs, each with its own 8x8x3x3 kernel, plus the entry and exit convs
    assert count_parameters(net) == 2 * 2 * 2 * (8 * 8 * 9) + (9 * 8 + 8) + (8 * 9 + 1)
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_plain = net.eval()(x, scale=3).numpy()
    np.testing.assert_allclose(out_plain, np.load(scaled[1] / "expected.npy"), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_a_layer_that_cannot_be_materialised_is_refused_and_nothing_is_written(scaled_without_weight, tmp_path):
    result = export(scaled_without_weight, tmp_path / "plain.safetensors")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "max |output difference|" not in result.stdout
    assert "'b1.b1_x2.conv1' (ScaledConv)" in " ".join(result.stderr.split())
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one

    previous = tmp_path / "previous.safetensors"
    previous.write_bytes(b"an earlier export")
    result = export(scaled_without_weight, previous)
    assert result.returncode == 2 and previous.read_bytes() == b"an earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["previous.safetensors"]


def test_a_sharing_shorthand_is_left_out_of_the_exported_network(tmp_path, capsys):
    # CARN_PS takes `gamma` or `sharing`, not both: the export records CARN_PS with `sharing: none` alone
    network = {"type": "CARN_PS", "num_features": 8, "scales": [2], "gamma": "8/9"}
    net = build_network(network, in_chans=3, out_chans=3)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_weights(tmp_path / "shared.safetensors", net.state_dict(), network=network, task={"type": "sisr", "scale": 2})
    out = tmp_path / "plain.safetensors"
    assert main(["export", "--weights", str(tmp_path / "shared.safetensors"), "--materialize", str(out)]) == 0
    assert "max |output difference| on a random 32x32 input (x2): 0" in capsys.readouterr().out
    plain, _ = load_model(out)
    recorded = load_weights(out)[1]["network"]  # with the arch's defaults, which weights record
    assert {k: recorded[k] for k in ("type", "num_features", "scales", "sharing")} == {
        "type": "CARN_PS", "num_features": 8, "scales": [2], "sharing": "none"}
    assert recorded.get("gamma") is None
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x, scale=2), net.eval()(x, scale=2))
