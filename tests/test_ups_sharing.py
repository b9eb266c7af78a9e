"""The ``unified_projection`` sharing layer: one U object for every attention layer, or n_share of them."""

from __future__ import annotations

import copy

import pytest
import torch
from restore_ups.attention import DecoupledWindowAttention

from restore.api import OptionError, build_network, count_parameters, materialize

TINY = {"embed_dim": 12, "depths": (2, 2, 2), "window_size": 4, "proj_dim": 8}  # 6 attention layers


def tiny_ups(sharing=None, **overrides):
    torch.manual_seed(0)
    options = {"type": "UPS", **TINY, **overrides}
    if sharing is not None:
        options["sharing"] = sharing
    return build_network(options, in_chans=3, scale=2)


def attention_layers(net):
    return [m for m in net.modules() if isinstance(m, DecoupledWindowAttention)]


def projections(net):
    """The projection module each attention layer actually runs, in layer order."""
    return [getattr(layer.projection, "target", layer.projection) for layer in attention_layers(net)]


def test_default_sharing_gives_every_attention_layer_the_same_u_object():
    net = tiny_ups()
    used = projections(net)
    assert len(used) == 6
    assert all(p is net.sharing.projections[0] for p in used)
    projection_keys = [k for k in net.state_dict() if "projection" in k]
    assert projection_keys == ["sharing.projections.0.weight"]


@pytest.mark.parametrize("n_share,sizes", [(2, [3, 3]), (4, [2, 2, 1, 1]), (6, [1] * 6)])
def test_n_share_gives_that_many_projections_over_consecutive_layers(n_share, sizes):
    net = tiny_ups({"type": "unified_projection", "n_share": n_share})
    used = projections(net)
    assert len({id(p) for p in used}) == n_share
    runs = [sum(1 for _ in group) for group in _consecutive_runs(used)]
    assert runs == sizes
    assert net.sharing.describe()["layers_per_projection"] == sizes


def _consecutive_runs(items):
    import itertools

    return [list(g) for _, g in itertools.groupby(items, key=id)]


def test_parameter_count_grows_by_one_projection_per_extra_group():
    c, d = TINY["embed_dim"], TINY["proj_dim"]
    unified = count_parameters(tiny_ups())
    assert count_parameters(tiny_ups({"type": "unified_projection", "n_share": 3})) == unified + 2 * c * d


def test_core_schemes_give_layer_specific_and_single_projections():
    unified = tiny_ups()
    layer_specific = tiny_ups("none")
    recursive = tiny_ups("recursive")
    assert len({id(p) for p in projections(layer_specific)}) == 6
    assert count_parameters(layer_specific) == count_parameters(tiny_ups({"type": "unified_projection", "n_share": 6}))
    assert len({id(p) for p in projections(recursive)}) == 1
    # recursive shares only the projection: each layer's conv has its own slot.
    assert len({id(layer.feature) for layer in attention_layers(recursive)}) == 6
    assert count_parameters(recursive) == count_parameters(unified)


def test_sharing_block_without_type_adjusts_the_default_unified_projection():
    assert tiny_ups({"n_share": 3}).sharing.describe()["layers_per_projection"] == [2, 2, 2]


def test_n_share_larger_than_the_number_of_layers_is_an_option_error():
    with pytest.raises(OptionError, match="n_share is 7 but the network has only 6"):
        tiny_ups({"type": "unified_projection", "n_share": 7})


def test_misspelt_sharing_option_names_the_path_and_suggests_the_key():
    with pytest.raises(OptionError, match=r"network_g\.sharing\.n_shares.*Did you mean 'n_share'"):
        tiny_ups({"type": "unified_projection", "n_shares": 2})


def test_gradient_of_u_is_the_sum_of_every_layers_contribution():
    net = tiny_ups()
    inputs, outputs = [], []

    def keep(module, args, out):
        out.retain_grad()
        inputs.append(args[0].detach())
        outputs.append(out)

    for layer in attention_layers(net):
        layer.projection.register_forward_hook(keep)
    net(torch.rand(1, 3, 8, 8)).square().mean().backward()

    contributions = [out.grad.flatten(0, -2).T @ x.flatten(0, -2) for x, out in zip(inputs, outputs, strict=True)]
    assert len(contributions) == 6
    assert all(c.abs().sum() > 0 for c in contributions), "some layer sends no gradient to U"
    u = net.sharing.projections[0].weight
    torch.testing.assert_close(u.grad, sum(contributions), rtol=1e-4, atol=1e-8)


def test_deep_copy_shares_the_copied_u_not_the_original():
    # EMA keeps a deep copy; its layers must run the copy's U.
    net = tiny_ups()
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin.sharing.projections[0].weight.zero_()
    assert all(p is twin.sharing.projections[0] for p in projections(twin))
    assert net.sharing.projections[0].weight.abs().sum() > 0


def test_materialized_network_loads_into_layer_specific_ups_with_the_same_output():
    net = tiny_ups().eval()
    plain = materialize(net)
    layer_specific = tiny_ups("none").eval()
    layer_specific.load_state_dict(plain.state_dict(), strict=True)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(layer_specific(x), net(x))
