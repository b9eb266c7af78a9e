"""Third-party plugins as users meet them: real packages, built with pip into temporary targets, on
PYTHONPATH of a fresh `restore` process.

* ``aaa-hijack 1.0`` (no manifest; its entry point sorts first) registers ``partial_filter``, which the
  built-in PS plugin owns, plus the archs ``HijackNet`` and ``TwinNet``;
* ``zzz-twin 2.0`` also registers ``TwinNet`` (a plain-module plugin with a names-only manifest);
* ``restore-scaled 0.3.0`` is CONTRIBUTING's ``scaled`` sharing scheme, with a names-only manifest;
* ``plugin-problems 0.1`` holds a plugin that fails to import and one whose manifest is stale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.conftest import DATASETS, REPO, run_restore, tiny_sisr_options
from tests.plugin_helpers import SCALED_WITHOUT_WEIGHT, pip_install, with_plugins

TINY_ARCH = '''
from torch import nn

from restore.api import register_arch


@register_arch(name="{name}")
class {cls}(nn.Module):
    """{doc}"""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, in_chans, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
'''

PACKAGES = {
    "aaa-hijack": ("1.0", {"aaa": "aaa_hijack"}, {
        "aaa_hijack/__init__.py": "from restore.api import SharingScheme, register_sharing\n"
        + TINY_ARCH.format(name="HijackNet", cls="HijackNet", doc="An arch of the package that wants partial_filter.")
        + TINY_ARCH.format(name="TwinNet", cls="AaaTwin", doc="aaa's TwinNet.")
        + '\n\n@register_sharing(name="partial_filter")\nclass Hijacked(SharingScheme):\n    """A stranger."""\n',
    }),
    "zzz-twin": ("2.0", {"zzz": "zzz_twin.plugin"}, {
        "zzz_twin/__init__.py": "",
        "zzz_twin/plugin.py": TINY_ARCH.format(name="TwinNet", cls="ZzzTwin", doc="zzz's TwinNet."),
        "zzz_twin/plugin.restore_plugin.json": json.dumps({"archs": ["TwinNet"]}),
    }),
    "restore-scaled": ("0.3.0", {"scaling": "restore_scaled"}, {
        "restore_scaled/__init__.py": SCALED_WITHOUT_WEIGHT,
        "restore_scaled/restore_plugin.json": json.dumps({"sharing": ["scaled"]}),
    }),
    "plugin-problems": ("0.1", {"broken": "broken_plugin", "stale": "stale_plugin"}, {
        "broken_plugin/__init__.py": TINY_ARCH.format(name="BrokenHalfNet", cls="BrokenHalfNet", doc="Half.")
        + '\nraise ImportError("needs a package that is not installed")\n',
        "stale_plugin/__init__.py": TINY_ARCH.format(name="NewName", cls="NewName", doc="Renamed since."),
        "stale_plugin/restore_plugin.json": json.dumps({"archs": ["OldName"]}),
    }),
}


def _pyproject(name: str, version: str, entry_points: dict[str, str], files: dict[str, str]) -> str:
    packages = sorted({path.split("/")[0] for path in files})
    data = {p: sorted({path.split("/", 1)[1] for path in files if path.startswith(p + "/") and path.endswith(".json")})
            for p in packages}
    lines = ["[build-system]", 'requires = ["setuptools>=70.1"]', 'build-backend = "setuptools.build_meta"', "",
             "[project]", f'name = "{name}"', f'version = "{version}"', "",
             '[project.entry-points."restore.plugins"]', *(f'{k} = "{v}"' for k, v in entry_points.items()), "",
             "[tool.setuptools]", f"packages = {json.dumps(packages)}", "",
             "[tool.setuptools.package-data]", *(f"{p} = {json.dumps(d)}" for p, d in data.items() if d)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Each package built and installed with pip (offline) into its own target."""
    root = tmp_path_factory.mktemp("plugin_packages")
    targets = {}
    for name, (version, entry_points, files) in PACKAGES.items():
        source = root / "src" / name
        for path, text in files.items():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            (source / path).write_text(text)
        (source / "pyproject.toml").write_text(_pyproject(name, version, entry_points, files))
        targets[name] = pip_install(source, root / "site" / name, root)
    return targets


def _python(code: str, *targets: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **with_plugins(*targets)})


def _listed(stdout: str, name: str) -> str:
    """The listing line of `name` (first column), or '' if it is not listed."""
    return next((line for line in stdout.splitlines() if line.split()[:1] == [name]), "")


def test_a_third_party_cannot_take_a_built_in_name_and_keeps_its_other_names(installed):
    result = run_restore("plugins", env=with_plugins(installed["aaa-hijack"]))
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout
    for arch in ("DRRN_PS", "CARN_PS", "SRFBN_S_PS", "HijackNet", "TwinNet"):
        assert _listed(out, arch), f"{arch} missing from:\n{out}"
    assert "[ps]" in _listed(out, "partial_filter") and "Partial filter-Sharing" in _listed(out, "partial_filter")
    assert "[aaa]" in _listed(out, "HijackNet")
    refusal = next(line for line in out.splitlines() if "refused" in line)
    assert "sharing layer 'partial_filter'" in refusal
    assert "restore 0.1.0" in refusal and "aaa-hijack 1.0" in refusal


def test_built_ins_win_whichever_name_is_looked_up_first(installed):
    for first in ("HijackNet", "partial_filter"):
        result = _python(f"""
            from restore.api import build_network
            from restore.registry import ARCHS, SHARING
            (ARCHS if "{first}" == "HijackNet" else SHARING).get("{first}")
            print(SHARING.entry("partial_filter").plugin, ARCHS.entry("HijackNet").plugin)
            net = build_network({{"type": "DRRN_PS", "num_units": 1, "num_features": 8}}, in_chans=3, out_chans=3)
            print(type(net.sharing).__module__)
        """, installed["aaa-hijack"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["ps", "aaa", "restore_ps.scheme"], first
        assert "partial_filter" in result.stderr and "aaa-hijack 1.0" in result.stderr  # warned, not silent


def test_a_name_two_third_parties_register_is_used_by_neither(installed):
    result = _python("""
        from restore.errors import RegistryError
        from restore.registry import ARCHS
        try:
            ARCHS.get("TwinNet", path="network_g.type")
        except RegistryError as exc:
            print(exc)
        print(ARCHS.entry("HijackNet").plugin)
    """, installed["aaa-hijack"], installed["zzz-twin"])
    assert result.returncode == 0, result.stderr
    message, plugin = result.stdout.strip().splitlines()
    assert message.startswith("network_g.type: arch 'TwinNet' is registered by several plugins")
    assert "aaa-hijack 1.0" in message and "zzz-twin 2.0" in message
    assert plugin == "aaa"


def test_a_broken_plugin_or_a_stale_manifest_makes_restore_plugins_fail_and_the_rest_loads(installed):
    result = run_restore("plugins", "--registry", "archs", env=with_plugins(installed["plugin-problems"]))
    assert result.returncode == 2
    out = result.stdout
    broken = _listed(out, "broken")
    assert "plugin-problems 0.1" in broken and "FAILED: ImportError: needs a package that is not installed" in broken
    assert not _listed(out, "BrokenHalfNet")  # its partial registration was rolled back
    assert _listed(out, "DRRN_PS") and _listed(out, "NewName")
    assert "declares arch(s) OldName that the plugin does not register" in out
    assert "does not declare arch(s) NewName that the plugin registers" in out
    assert "problem(s) found" in out


def test_a_stale_manifest_is_reported_when_the_plugin_loads(installed):
    result = _python("""
        from restore.registry import ARCHS, load_plugins
        load_plugins(lambda record: record.name == "stale")
        print(ARCHS.entry("NewName").plugin)
    """, installed["plugin-problems"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stale"
    assert "stale_plugin" in result.stderr and "restore_plugin.json is stale" in result.stderr
    assert "OldName" in result.stderr and "NewName" in result.stderr


def test_a_plugin_with_a_manifest_is_imported_only_when_one_of_its_names_is_needed(installed):
    result = _python("""
        import sys
        from restore.registry import ARCHS, SHARING
        ARCHS.get("DRRN")
        print("restore_scaled" in sys.modules, "basicsr" in sys.modules, "restore_ups" in sys.modules)
        SHARING.get("scaled")
        print("restore_scaled" in sys.modules)
    """, installed["restore-scaled"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False", "True"]


def test_write_manifest_generates_what_check_compares_and_check_finds_a_stale_one(installed, tmp_path):
    site = shutil.copytree(installed["restore-scaled"], tmp_path / "site")
    written = run_restore("plugins", "--write-manifest", "scaling", env=with_plugins(site))
    assert written.returncode == 0, written.stderr
    manifest = json.loads((site / "restore_scaled/restore_plugin.json").read_text())
    assert manifest["sharing"]["scaled"]["doc"] == "One kernel per slot, scaled per layer and output channel."
    assert manifest["sharing"]["scaled"]["options"] == []
    assert json.loads(manifest["sharing"]["scaled"]["describe"])["type"]  # describe() of a default instance
    checked = run_restore("plugins", "--check", "--registry", "sharing", env=with_plugins(site))
    assert checked.returncode == 0, checked.stdout

    module = site / "restore_scaled/__init__.py"  # the author documents the scheme differently, forgets the manifest
    module.write_text(module.read_text().replace("One kernel per slot, scaled", "One kernel per slot, rescaled"))
    checked = run_restore("plugins", "--check", "--registry", "sharing", env=with_plugins(site))
    assert checked.returncode == 2
    assert "run `restore plugins --write-manifest scaling`" in checked.stdout
    assert "sharing: details changed for scaled" in checked.stdout


@pytest.mark.slow
def test_weights_name_the_package_they_need_when_it_is_missing(installed, tmp_path, write_options):
    options = tiny_sisr_options(
        tmp_path, name="scaled_drrn", train__total_iter=2, val__val_freq=100, logger__save_checkpoint_freq=2,
        logger__print_freq=1, datasets__train__gt_size=32, datasets__train__batch_size_per_gpu=2,
        network_g={"type": "DRRN", "num_units": 1, "num_features": 8, "sharing": {"type": "scaled"}})
    option_file = write_options(options)
    trained = run_restore("train", "-opt", str(option_file), "--no-progress",
                          env=with_plugins(installed["restore-scaled"]))
    assert trained.returncode == 0, trained.stderr[-3000:]
    weights = tmp_path / "experiments/scaled_drrn/models/net_g_latest.safetensors"
    with safe_open(weights, framework="pt") as f:
        recorded = json.loads(f.metadata()["restore.provenance"])
    assert recorded == {"arch:DRRN": "restore 0.1.0", "sharing:scaled": "restore-scaled 0.3.0",
                        "task:sisr": "restore 0.1.0"}

    for command in (("test", "--weights", str(weights), "--dataset", str(DATASETS / "Set5/HR"),
                     "--out", str(tmp_path / "report")),
                    ("infer", str(DATASETS / "Set5/LR_bicubic/X2/birdx2.png"), str(tmp_path / "out"),
                     "--weights", str(weights)),
                    ("export", "--weights", str(weights), "--materialize", str(tmp_path / "plain.safetensors")),
                    ("train", "-opt", str(option_file), "--resume", "--no-progress")):
        result = run_restore(*command)  # the package is not on the path any more
        assert result.returncode == 2, (command, result.stderr[-2000:])
        message = " ".join(result.stderr.split())
        assert message.startswith(f"error: {weights}: these weights need sharing layer 'scaled' from "
                                  "restore-scaled 0.3.0"), (command, message)
        assert 'pip install "restore-scaled==0.3.0"' in message
        assert "network_g.sharing" not in message and "Traceback" not in result.stderr
    assert not (tmp_path / "report").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "plain.safetensors").exists()

    again = run_restore("test", "--weights", str(weights), "--dataset", str(DATASETS / "Set5/HR"), "--out",
                        str(tmp_path / "report"), "--model", "net", "--no-save-img",
                        env=with_plugins(installed["restore-scaled"]))
    assert again.returncode == 0, again.stderr[-3000:]
