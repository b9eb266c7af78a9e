"""CARN(-PS), DRRN(-PS) and SRFBN-S(-PS): the paper's parameter counts, the sharing switch from
YAML, multi-scale calls and SRFBN's per-step outputs."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from restore.api import OptionError, build_network, count_parameters
from tests.conftest import run_restore

# Park & Cho (WACV 2025) Table 1 / the released code, frozen mean-shift values included.
PAPER_PARAMETERS = [
    ({"type": "DRRN_PS"}, None, 306_093),
    ({"type": "CARN_PS", "gamma": "6/9"}, None, 1_425_571),
    ({"type": "CARN_PS", "gamma": "8/9"}, None, 1_590_523),
    ({"type": "CARN_PS", "num_partial_filters": 108}, None, 1_425_571),
    ({"type": "SRFBN_S_PS"}, 2, 282_355),
    ({"type": "SRFBN_S_PS"}, 3, 373_363),
    ({"type": "SRFBN_S_PS"}, 4, 481_011),
    # unshared baselines built from the same code (recursive = the original weight-tied nets)
    ({"type": "SRFBN_S"}, 2, 282_442),
    ({"type": "SRFBN_S"}, 3, 375_626),
    ({"type": "SRFBN_S"}, 4, 483_146),
    ({"type": "CARN"}, None, 1_591_963),
    ({"type": "DRRN"}, None, 297_345),
    ({"type": "DRRN", "num_units": 25}, None, 297_345),
]


@pytest.mark.parametrize("options, scale, expected", PAPER_PARAMETERS, ids=lambda v: str(v))
def test_parameter_counts_match_the_paper(options, scale, expected):
    assert count_parameters(build_network(options, scale=scale)) == expected


def network_from_yaml(text: str, scale: int | None = None) -> torch.nn.Module:
    return build_network(yaml.safe_load(text)["network_g"], scale=scale)


# DRRN, C=128, k=3: base = entry (9*128 + 128) + exit (9*128 + 1); L = 9 units x 3 scales x 2 convs.
DRRN_BASE, C, L = 1280 + 1153, 128, 54


@pytest.mark.parametrize(
    "sharing, expected",
    [
        ("none", DRRN_BASE + L * 9 * C * C),  # every unit and scale independent
        ("recursive", DRRN_BASE + 2 * 9 * C * C),  # slots conv1/conv2 only
        ("{type: partial_filter, num_partial_filters: 18}", DRRN_BASE + 18 * C * C + L * 9 * 18),
        ("{type: partial_filter, ratio: 1/2}", DRRN_BASE + 9 * C * C + L * 9 * 9),  # N_p = 18/2
        ("{type: partial_filter, ratio: 0.25}", DRRN_BASE + 4 * C * C + L * 9 * 4),  # round(4.5) = 4
    ],
)
def test_switching_drrn_sharing_from_yaml_follows_the_formulas(sharing, expected):
    net = network_from_yaml(f"network_g:\n  type: DRRN\n  sharing: {sharing}\n")
    assert count_parameters(net) == expected


# SRFBN-S x2, F=32, k=6: down projections are (T=4 steps x G=3 groups) convs + PReLUs.
def srfbn_x2_rest() -> int:
    net = build_network({"type": "SRFBN_S_PS"}, scale=2)
    down = sum(p.numel() for n, p in net.named_parameters() if "downBlocks" in n or "sharing" in n)
    return count_parameters(net) - down


@pytest.mark.parametrize(
    "sharing, down_parameters",
    [
        ("none", 12 * (32 * 32 * 36 + 1)),
        ("recursive", 3 * (32 * 32 * 36 + 1)),
        ("{type: partial_filter, ratio: 18/24}", 72 * 32 * 36 + 12 * 32 * 72 + 12),  # N_total = 3 slots x 32
        ("{type: partial_filter, ratio: 1}", 96 * 32 * 36 + 12 * 32 * 96 + 12),
    ],
)
def test_switching_srfbn_sharing_from_yaml_follows_the_formulas(sharing, down_parameters):
    net = network_from_yaml(f"network_g:\n  type: SRFBN_S\n  down_bias: false\n  sharing: {sharing}\n", scale=2)
    assert count_parameters(net) == srfbn_x2_rest() + down_parameters


def test_carn_ps_gamma_sets_the_bank_and_conflicts_with_an_explicit_scheme():
    assert build_network({"type": "CARN_PS", "gamma": "6/9"}).sharing.banks["tap_64x64_k3"].shape == (108, 4096)
    with pytest.raises(OptionError, match="either `sharing` or the shorthand"):
        build_network({"type": "CARN_PS", "gamma": "6/9", "sharing": "none"})


@pytest.mark.parametrize("arch", ["CARN_PS", "DRRN_PS", "CARN", "DRRN"])
def test_multi_scale_networks_take_the_scale_per_call(arch):
    small = {"CARN_PS": {"num_features": 8}, "CARN": {"num_features": 8},
             "DRRN_PS": {"num_features": 8, "num_units": 2}, "DRRN": {"num_features": 8, "num_units": 2}}[arch]
    net = build_network({"type": arch, **small}).eval()
    assert net.restore_info.multi_scale
    x = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        for scale in (2, 3, 4):
            assert net(x, scale=scale).shape == (2, 3, 7 * scale, 9 * scale)
        with pytest.raises(OptionError, match="cannot run at scale 8"):
            net(x, scale=8)


def test_single_scale_subset_builds_only_its_units():
    net = build_network({"type": "CARN_PS", "scales": [4]})
    names = {n for n, _ in net.named_modules()}
    assert "b1.b1_x4" in names and "b1.b1_x2" not in names and "upsample.up4" in names


def test_srfbn_returns_every_step_in_training_and_the_last_in_eval():
    net = build_network({"type": "SRFBN_S_PS", "num_features": 8}, scale=3)
    x = torch.rand(1, 3, 6, 5)
    steps = net.train()(x)
    assert isinstance(steps, list) and len(steps) == 4 and steps[0].shape == (1, 3, 18, 15)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), steps[-1].detach())


def test_srfbn_recursive_reuses_the_down_blocks_of_each_group():
    net = build_network({"type": "SRFBN_S"}, scale=2)
    shared = dict(net.sharing.shared.items())
    assert sorted(shared) == ["conv__down0", "conv__down1", "conv__down2",
                              "module__down0", "module__down1", "module__down2"]
    assert net.block.downBlocks[4][0].target is shared["conv__down1"]  # step 1, group 1


def test_srfbn_ps_has_no_released_gamma_at_x8():
    with pytest.raises(OptionError, match="no released gamma for scale 8"):
        build_network({"type": "SRFBN_S_PS"}, scale=8)
    assert build_network({"type": "SRFBN_S_PS", "gamma": 0.75, "num_features": 8}, scale=8).scale == 8


@pytest.mark.parametrize("arch", ["CARN_PS", "DRRN_PS", "SRFBN_S_PS"])
def test_rgb_only_networks_reject_other_channel_counts(arch):
    with pytest.raises(OptionError, match="RGB"):
        build_network({"type": arch}, in_chans=1, out_chans=1, scale=2)


def test_multi_scale_training_draws_a_scale_per_batch_and_updates_each_scales_coefficients(tmp_path, write_options):
    options = {
        "name": "ps_multi_scale", "task": {"type": "sisr", "scale": 2}, "manual_seed": 0,
        "datasets": {"train": {"name": "skimage", "dataroot_gt": "skimage:rgb", "lq_size": 12, "scales": [2, 3, 4],
                               "batch_size_per_gpu": 2, "num_worker_per_gpu": 0}},
        "network_g": {"type": "CARN_PS", "num_features": 8, "gamma": "1/3"},
        "path": {"experiments_root": str(tmp_path / "experiments")},
        "train": {"total_iter": 12, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 6, "save_checkpoint_freq": 12, "use_tb_logger": False},
    }
    trained = run_restore("train", "-opt", str(write_options(options)), "--no-progress")
    assert trained.returncode == 0, trained.stderr
    weights = load_file(str(tmp_path / "experiments/ps_multi_scale/models/net_g_latest.safetensors"))
    initial = torch.full((9, 54), 1 / 54)  # gamma 1/3 of 162; coefficients start at 1/N_p
    for scale in (2, 3, 4):
        assert not torch.allclose(weights[f"b1.b1_x{scale}.conv1.element"], initial), scale
