"""`restore profile`: parameters and fvcore FLOPs at the papers' 1280x720 convention, with the published figures."""

from __future__ import annotations

import re

import pytest

from restore.cli import main
from restore.errors import OptionError
from restore.profile import lr_input_size, paper_figures, profile_arch

# A 32x64 output gives an x2 LR input of 16x32, a window multiple holding 1/450 of the 360x640 LR
# pixels of a 1280x720 output. Every operator fvcore counts (conv, linear, LayerNorm, the
# per-window matmuls) is exactly proportional to the pixel count of such inputs.
SMALL_OUTPUT, TO_PAPER_SIZE = (32, 64), 450


@pytest.mark.parametrize("scale,multiple,expected", [(2, 8, (360, 640)), (3, 8, (240, 432)), (4, 8, (184, 320)),
                                                     (3, 1, (240, 427))])
def test_lr_input_follows_the_papers_rounding_and_window_padding(scale, multiple, expected):
    assert lr_input_size((720, 1280), scale, multiple) == expected


def test_swinir_light_flops_reproduce_the_ups_papers_244_4g():
    prof = profile_arch({"type": "SwinIR_light"}, scale=2, output_size=SMALL_OUTPUT)
    assert prof.lr_size == (16, 32)
    assert prof.flops * TO_PAPER_SIZE / 1e9 == pytest.approx(244.4, abs=0.05)
    assert prof.params == 910_152


@pytest.mark.parametrize("arch,options,params,gflops", [
    ("UPS", {}, 822_792, 230.1), ("UPS_S", {}, 452_088, 136.3),  # the default, variant: alt
    ("UPS", {"variant": "ref"}, 830_112, 233.5), ("UPS_S", {"variant": "ref"}, 451_792, 137.7),
])
def test_ups_flops_at_the_paper_setting_are_those_of_the_design_note(arch, options, params, gflops):
    prof = profile_arch({"type": arch, **options}, scale=2, output_size=SMALL_OUTPUT)
    assert prof.params == params
    assert prof.flops * TO_PAPER_SIZE / 1e9 == pytest.approx(gflops, abs=0.05)
    assert set(prof.by_operator) == {"conv", "linear", "matmul", "layer_norm"}


def test_paper_figures_come_from_the_arch_registry_metadata():
    figures, provenance = paper_figures("UPS", 2)
    assert figures == {"params": 824_000, "flops": 162.5e9}
    assert "4.8" in provenance["note"]  # the FLOPs caveat points at the design note's analysis
    assert paper_figures("UPS", 3) is None
    assert paper_figures("EDSR", 2) is None  # an arch without published figures


def test_profile_command_prints_measured_and_published_figures(capsys):
    assert main(["profile", "--arch", "UPS", "UPS_S", "--scale", "2", "--paper", "--output-size", "32x32"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| UPS +\| x2 +\| 822,792 +\|", out)
    assert "824.0K (-0.1%)" in out  # 822,792 vs 824K
    assert "453.0K (-0.2%)" in out
    assert "Published FLOPs refer to a 1280x720 output" in out
    assert "matches both published numbers (design note section 4.8)" in out


def test_profile_command_marks_overridden_configurations(capsys):
    assert main(["profile", "--arch", "UPS_S", "--set", "proj_dim=128", "--set", "sharing.n_share=24",
                 "--paper", "--output-size", "64x64"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| UPS_S\* +\|", out)
    assert "UPS_S differs from its registered defaults: proj_dim=128, sharing={'n_share': 24}" in out
    assert "585,848" in out  # 452,088 + 96 x 44 (d) + 23 x 44 x 128 (the extra projections)
    assert "(+" not in out and "(-" not in out  # no relative figure against a different model


def test_profile_command_reads_an_option_file(capsys):
    assert main(["profile", "-opt", "options/ups_sr_x3.yml", "--output-size", "48x48", "--by-operator"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| UPS +\| x3 +\| 830,907 +\|", out)
    assert "UPS x3 FLOPs by operator: conv" in out


def test_profile_command_rejects_a_malformed_output_size(capsys):
    assert main(["profile", "--arch", "UPS", "--output-size", "1280by720"]) == 2
    assert "--output-size '1280by720': expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_unknown_option_in_set_is_an_option_error():
    with pytest.raises(OptionError, match="network_g.proj_dimm"):
        profile_arch({"type": "UPS", "proj_dimm": 8}, scale=2, output_size=(16, 16))


@pytest.mark.slow
def test_profile_at_1280x720_prints_ups_s_and_swinir_light_beside_the_paper(capsys):
    # UPS at width 60 is the same layers as UPS-S: its full-size figures are checked by scaling above
    assert main(["profile", "--arch", "UPS_S", "SwinIR_light", "--scale", "2", "--paper"]) == 0
    out = capsys.readouterr().out
    rows = [r"\| UPS_S +\| x2 +\| 452,088 +\| 136.3G +\| 640x360 +\| 453.0K \(-0.2%\) +\| 90.6G \(\+50.4%\) +\|",
            r"\| SwinIR_light +\| x2 +\| 910,152 +\| 244.4G +\| 640x360 +\| 910.0K \(\+0.0%\) +\| 244.4G \(-0.0%\) +\|"]
    for row in rows:
        assert re.search(row, out), row
