"""``sharing: {type: compose}``: several registered schemes in one network, chosen by slot pattern."""

from __future__ import annotations

import copy

import pytest
import torch
from restore_ps.layers import PSConv2d

from restore.api import OptionError, SharedRef, build_network, count_parameters, materialize
from restore.checkpoint import load_weights
from restore.cli import main
from tests.conftest import tiny_sisr_options

TINY = {"embed_dim": 12, "depths": (2, 2), "window_size": 4, "proj_dim": 8}  # 4 attention layers
UNIFIED_AND_PS = {"type": "compose", "rules": [
    {"slots": "projection", "scheme": "unified_projection"},
    {"slots": "*.feature", "scheme": {"type": "partial_filter", "ratio": "1/3"}},
], "default": "none"}


def ups(sharing=None, arch="UPS", **options):
    """UPS with the reference layer: one full 3x3 'feature' conv and one 'projection' per layer."""
    torch.manual_seed(0)
    spec = {"type": arch, "variant": "ref", **options}
    if sharing is not None:
        spec["sharing"] = sharing
    return build_network(spec, in_chans=3, scale=2).eval()


def layers(net):
    return [layer for group in net.groups for layer in group.layers]


def test_each_slot_gets_the_scheme_of_its_rule():
    net = ups(UNIFIED_AND_PS, **TINY)
    unified, partial = net.sharing.rules
    for layer in layers(net):
        assert isinstance(layer.projection, SharedRef) and layer.projection.target is unified.projections[0]
        assert isinstance(layer.feature, PSConv2d) and layer.feature.bank is partial.banks["tap_12x12_k3"]


def test_first_matching_rule_wins_and_unmatched_slots_get_the_default():
    net = ups({"type": "compose", "rules": [
        {"slots": "layer0.feature", "scheme": "none"},
        {"slots": ["layer1.*", "layer2.*"], "scheme": {"type": "partial_filter", "num_partial_filters": 4}},
    ], "default": "recursive"}, **TINY)
    features = [type(layer.feature).__name__ for layer in layers(net)]
    assert features == ["Conv2d", "PSConv2d", "PSConv2d", "SharedRef"]
    assert len({id(layer.projection.target) for layer in layers(net)}) == 1  # recursive: one 'projection'
    assert net.sharing.describe()["default"]["layers"] == 4 + 1  # 4 projection requests and layer3's conv


def test_ups_s_with_unified_projection_and_partial_filter_convs_has_the_parameters_of_its_parts():
    net = ups(UNIFIED_AND_PS, arch="UPS_S")
    c, layers_, n_total = 44, 24, 24 * 9
    n_p = n_total // 3
    convs = layers_ * (c * c * 9 + c)
    partial = n_p * c * c + layers_ * (9 * n_p + c)
    assert count_parameters(net) == count_parameters(ups(arch="UPS_S")) - convs + partial == 188_560


def test_state_dict_holds_every_shared_tensor_once_under_its_rule():
    state = ups(UNIFIED_AND_PS, **TINY).state_dict()
    assert [k for k in state if k.startswith("sharing.")] == [
        "sharing.rules.0.projections.0.weight", "sharing.rules.1.banks.tap_12x12_k3"]
    assert len({t.data_ptr() for t in state.values()}) == len(state)


def test_deep_copy_runs_its_own_sub_schemes():
    net = ups(UNIFIED_AND_PS, **TINY)
    twin = copy.deepcopy(net)  # what EMA keeps
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        before = net(x)
        twin.sharing.rules[1].banks["tap_12x12_k3"].zero_()
        assert torch.equal(net(x), before)
        assert not torch.equal(twin(x), before)
    assert all(layer.feature.bank is twin.sharing.rules[1].banks["tap_12x12_k3"] for layer in layers(twin))
    assert all(layer.projection.target is twin.sharing.rules[0].projections[0] for layer in layers(twin))


def test_materialized_network_loads_into_sharing_none_with_identical_outputs():
    net = ups(UNIFIED_AND_PS, **TINY)
    plain = ups("none", **TINY)
    plain.load_state_dict(materialize(net).state_dict(), strict=True)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(plain(x), net(x))


def test_describe_reports_each_rule_with_its_scheme_and_layers():
    described = ups(UNIFIED_AND_PS, **TINY).sharing.describe()
    assert described["type"] == "compose"
    first, second = described["rules"]
    assert first == {"slots": ["projection"], "layers": 4, "scheme": {
        "type": "unified_projection", "n_share": 1, "layers": 4, "layers_per_projection": [4]}}
    assert second["slots"] == ["*.feature"] and second["layers"] == 4
    assert second["scheme"]["banks"]["tap_12x12_k3"]["N_p"] == 12
    assert described["default"] == {"layers": 0, "scheme": {"type": "none"}}


@pytest.mark.parametrize("sharing,message", [
    ({"rules": [{"slots": "projection", "scheme": {"type": "unified_projection", "n_shar": 2}}]},
     r"network_g\.sharing\.rules\.0\.scheme\.n_shar: unknown option.*Did you mean 'n_share'"),
    ({"rules": [{"slot": "projection", "scheme": "none"}]},
     r"network_g\.sharing\.rules\.0\.slot: unknown option.*Did you mean 'slots'"),
    ({"rules": [{"slots": "projection", "scheme": "unified_projecton"}]},
     r"network_g\.sharing\.rules\.0\.scheme\.type: Unknown sharing layer 'unified_projecton'"),
    ({"rules": [{"slots": "projection"}]}, r"network_g\.sharing\.rules\.0: missing required option.*scheme"),
    ({"rules": ["projection"]}, r"network_g\.sharing\.rules\.0: expected a mapping"),
    ({"rules": [{"slots": [], "scheme": "none"}]}, r"network_g\.sharing\.rules\.0\.slots: give a slot pattern"),
    ({"rules": [], "default": {"type": "recursve"}}, r"network_g\.sharing\.default\.type: Unknown sharing layer"),
    ({"rules": [], "defualt": "none"}, r"network_g\.sharing\.defualt: unknown option.*Did you mean 'default'"),
])
def test_bad_compose_options_name_their_full_path(sharing, message):
    with pytest.raises(OptionError, match=message):
        ups({"type": "compose", **sharing}, **TINY)


def test_a_rule_that_matches_no_slot_is_refused_with_the_networks_slots():
    with pytest.raises(OptionError) as caught:
        ups({"type": "compose", "rules": [{"slots": "*.feture", "scheme": "recursive"}]}, **TINY)
    assert str(caught.value) == (
        "network_g.sharing.rules.0.slots ['*.feture']: no slot of this network matches (did you mean "
        "'layer*.feature'?). The network's slots: layer*.feature (4), projection.")


def test_a_rule_shadowed_by_an_earlier_one_is_refused():
    with pytest.raises(OptionError, match=r"rules\.1\.slots \['layer0\.feature'\]: every slot they match is taken "
                                          r"by earlier rule\(s\) \[0\]"):
        ups({"type": "compose", "rules": [{"slots": "*.feature", "scheme": "none"},
                                          {"slots": "layer0.feature", "scheme": "recursive"}]}, **TINY)


def test_grouped_convs_go_to_a_scheme_that_can_express_them():
    alt = {**TINY, "variant": "alt"}  # grouped 3x3 layer convs
    with pytest.raises(OptionError, match=r"partial_filter sharing cannot rebuild slot 'layer0\.feature'.*groups=4"):
        ups({"type": "partial_filter"}, **alt)
    net = ups({"type": "compose", "rules": [{"slots": "*.feature", "scheme": "recursive"}],
               "default": "unified_projection"}, **alt)
    assert count_parameters(net) == count_parameters(ups(**alt))


def test_composed_ups_s_trains_exports_and_reloads_as_sharing_none(tmp_path, write_options, capsys):
    network = {"type": "UPS_S", "variant": "ref", **TINY, "sharing": UNIFIED_AND_PS}
    options = tiny_sisr_options(tmp_path, name="composed", network_g=network, train__total_iter=4,
                                datasets__train__gt_size=32, val__val_freq=4, logger__print_freq=2,
                                logger__save_checkpoint_freq=4, logger__use_tb_logger=False)
    assert main(["train", "-opt", str(write_options(options)), "--no-progress"]) == 0
    log = next((tmp_path / "experiments/composed/logs").glob("train_*.log")).read_text()
    assert "[iter 4/4]" in log and "[val Set5 @ 4] psnr" in log
    trained = tmp_path / "experiments/composed/models/net_g_latest.safetensors"
    exported = tmp_path / "plain.safetensors"
    assert main(["export", "--weights", str(trained), "--materialize", str(exported)]) == 0
    printed = capsys.readouterr().out
    assert "max |output difference| on a random 32x32 input (its scale): 0" in printed

    state, meta = load_weights(exported)
    assert meta["network"]["sharing"] == "none"
    plain = build_network(meta["network"], in_chans=3, scale=2).eval()
    plain.load_state_dict(state, strict=True)
    composed = build_network(network, in_chans=3, scale=2).eval()
    shared_state, _ = load_weights(trained)
    composed.load_state_dict(shared_state, strict=True)
    assert count_parameters(composed) < count_parameters(plain)
    x = torch.rand(1, 3, 13, 18)
    with torch.no_grad():
        assert torch.equal(plain(x), composed(x))
