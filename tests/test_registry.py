"""Registries: duplicate and unknown names, entry-point discovery, isolation of broken plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from restore.errors import RegistryError
from restore.registry import ARCHS, PLUGINS, Registry, load_plugin, load_plugins
from tests.conftest import run_restore


def test_registering_a_name_twice_names_both_origins():
    registry = Registry("widget")

    @registry.register(name="Gadget")
    class First:
        pass

    with pytest.raises(RegistryError) as err:

        @registry.register(name="Gadget")
        class Second:
            pass

    message = str(err.value)
    assert "First" in message and "Second" in message and "'Gadget'" in message


def test_unknown_name_lists_known_ones_and_suggests_the_closest():
    with pytest.raises(RegistryError) as err:
        ARCHS.get("SwinIr_lite", path="network_g.type")
    message = str(err.value)
    assert message.startswith("network_g.type: Unknown arch 'SwinIr_lite'.")
    assert "Did you mean 'SwinIR_light'?" in message
    assert "MSRResNet" in message and "DRRN_PS" in message


def test_lookup_tolerates_case_when_unambiguous():
    assert ARCHS.get("msrresnet") is ARCHS.get("MSRResNet")


def test_every_basicsr_arch_is_usable_by_name():
    from basicsr.utils.registry import ARCH_REGISTRY

    for name, cls in ARCH_REGISTRY:
        assert ARCHS.get(name) is cls
    for name in ("SwinIR", "EDSR", "RCAN", "MSRResNet"):
        assert ARCHS.entry(name).plugin == "basicsr"


def test_built_in_plugins_load_through_entry_points():
    load_plugins()
    for name in ("core", "basicsr", "ps", "ups", "tasks"):
        assert PLUGINS[name].builtin and PLUGINS[name].state == "loaded", PLUGINS[name].detail
        assert not PLUGINS[name].problems


def test_a_broken_plugin_is_reported_rolled_back_and_does_not_stop_others(tmp_path, monkeypatch):
    (tmp_path / "half_broken_plugin.py").write_text(textwrap.dedent("""
        from restore.api import register_arch
        from torch import nn

        @register_arch
        class HalfRegisteredNet(nn.Module):
            pass

        raise ImportError("needs a package that is not installed")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    record = load_plugin("half_broken", "half_broken_plugin")
    try:
        assert record.error == "ImportError: needs a package that is not installed"
        assert "HalfRegisteredNet" not in ARCHS  # its partial registration was rolled back
        assert "MSRResNet" in ARCHS
        with pytest.raises(RegistryError, match="plugin\\(s\\) 'half_broken' failed to load"):
            ARCHS.get("HalfRegisteredNet")
    finally:
        PLUGINS.pop("half_broken", None)
        sys.modules.pop("half_broken_plugin", None)


def _install_fake_distribution(site: Path, module_source: str) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on a private path."""
    (site / "thirdparty_restore_plugin.py").write_text(textwrap.dedent(module_source))
    dist = site / "thirdparty_restore_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-restore-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[restore.plugins]\nthirdparty = thirdparty_restore_plugin\n")


def test_third_party_package_registers_through_the_entry_point_group(tmp_path):
    _install_fake_distribution(tmp_path, """
        from restore.api import register_arch
        from torch import nn

        @register_arch
        class ThirdPartyNet(nn.Module):
            '''A network from someone else's package.'''
    """)
    result = run_restore("plugins", "--registry", "archs", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "thirdparty" in result.stdout and "thirdparty-restore-plugin 1.2.3" in result.stdout
    assert "ThirdPartyNet" in result.stdout and "[thirdparty]" in result.stdout


def test_third_party_name_clash_is_refused_naming_both_packages(tmp_path):
    _install_fake_distribution(tmp_path, """
        from restore.api import register_arch
        from torch import nn

        @register_arch(name="MSRResNet")
        class MyMSRResNet(nn.Module):
            pass

        @register_arch
        class MyOtherNet(nn.Module):
            pass
    """)
    result = run_restore("plugins", "--registry", "archs", "-v", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    refusal = next(line for line in result.stdout.splitlines() if "refused" in line)
    assert "arch 'MSRResNet' belongs to built-in plugin 'basicsr' (restore 0.1.0)" in refusal
    assert "thirdparty-restore-plugin 1.2.3" in refusal
    assert "basicsr.archs.srresnet_arch.MSRResNet" in result.stdout  # -v shows where the kept one comes from
    assert "MyOtherNet" in result.stdout  # the rest of the plugin loaded


def test_built_in_manifests_declare_exactly_what_the_plugins_register():
    """When this fails, run the `restore plugins --write-manifest NAME` it names (e.g. after adding a
    scheme or an arch to a built-in plugin) and commit the regenerated restore_plugin.json."""
    from restore.catalogue import manifest_differences

    load_plugins()
    stale = {name: manifest_differences(record) for name, record in PLUGINS.items() if record.builtin}
    assert set(stale) == {"core", "basicsr", "ps", "ups", "tasks"}
    report = [f"plugin '{name}': {'; '.join(problems)} -> run `restore plugins --write-manifest {name}`"
              for name, problems in stale.items() if problems]
    assert not report, "\n".join(report)


def test_a_lookup_imports_only_the_plugin_that_declares_the_name():
    code = ("import sys; from restore.registry import ARCHS, PLUGINS; ARCHS.get('DRRN_PS'); "
            "print(sorted(n for n, r in PLUGINS.items() if r.state == 'loaded'), 'basicsr' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['ps']", "False"]
