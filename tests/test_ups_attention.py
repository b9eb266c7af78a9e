"""The decoupled window-attention layer against a naive per-window, per-pair reading of the paper."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from restore_ups.attention import DecoupledWindowAttention
from torch import nn


def make_layer(*, dim=8, window=4, shift=2, proj_dim=4, groups=1, similarity="cosine", activation="relu",
               attn_norm="none"):
    torch.manual_seed(0)
    layer = DecoupledWindowAttention(
        dim, window=window, shift=shift, feature=nn.Conv2d(dim, dim, 3, padding=1),
        projection=nn.Linear(dim, proj_dim, bias=False), proj_dim=proj_dim, groups=groups,
        similarity=similarity, activation=activation, attn_norm=attn_norm,
    )
    with torch.no_grad():  # a bias large enough to matter against the similarities
        layer.bias_table.normal_(0, 0.5)
    return layer


def region(index: int, length: int, window: int, shift: int) -> int:
    """Swin's three bands along one axis of the shifted map: [0, L-M), [L-M, L-s), [L-s, L)."""
    if shift == 0 or index < length - window:
        return 0
    return 1 if index < length - shift else 2


def naive_layer(layer: DecoupledWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """F + S X computed window by window and pair by pair, straight from the equations."""
    m, s, g = layer.window, layer.shift, layer.groups
    _, h, w, c = x.shape
    feats = layer.feature(layer.norm(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    feats = torch.roll(feats, (-s, -s), dims=(1, 2))
    u = layer.projection.weight.T  # (C, d)
    d = u.shape[1]
    y = torch.zeros_like(feats)
    for b, wr, wc in itertools.product(range(x.shape[0]), range(h // m), range(w // m)):
        cells = [(wr * m + i, wc * m + j) for i in range(m) for j in range(m)]
        xw = torch.stack([feats[b, r, col] for r, col in cells])  # (N, C)
        q = xw @ u
        for grp in range(g):
            qg = q[:, grp * d // g : (grp + 1) * d // g]
            vg = xw[:, grp * c // g : (grp + 1) * c // g]
            logits = torch.full((m * m, m * m), float("-inf"))
            for p, (rp, cp) in enumerate(cells):
                for k, (rk, ck) in enumerate(cells):
                    if (region(rp, h, m, s), region(cp, w, m, s)) != (region(rk, h, m, s), region(ck, w, m, s)):
                        continue  # tokens the roll brought together from different regions
                    if layer.similarity == "cosine":
                        sim = qg[p] @ qg[k] / (qg[p].norm() * qg[k].norm())
                    else:
                        sim = qg[p] @ qg[k] / math.sqrt(d // g)
                    bias = layer.bias_table[(rp - rk + m - 1) * (2 * m - 1) + (cp - ck + m - 1), grp]
                    logits[p, k] = sim + bias
            weights = torch.relu(logits) if layer.activation == "relu" else torch.softmax(logits, dim=-1)
            if layer.attn_norm == "tokens":
                weights = weights / (m * m)
            out = weights @ vg
            for p, (r, col) in enumerate(cells):
                y[b, r, col, grp * c // g : (grp + 1) * c // g] = out[p]
    return x + torch.roll(y, (s, s), dims=(1, 2))


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_cosine_relu_layer_equals_naive_per_window_reference(shift, groups):
    layer = make_layer(shift=shift, groups=groups)
    x = torch.randn(2, 8, 12, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive_layer(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("similarity,activation", [("dot", "relu"), ("cosine", "softmax"), ("dot", "softmax")])
def test_ablation_similarities_equal_naive_per_window_reference(similarity, activation):
    layer = make_layer(groups=2, similarity=similarity, activation=activation)
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive_layer(layer, x), rtol=1e-5, atol=1e-5)


def test_optional_token_normalisation_divides_the_similarities_by_the_window_size():
    layer = make_layer(groups=2, attn_norm="tokens")
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive_layer(layer, x), rtol=1e-5, atol=1e-5)


def test_each_image_of_a_batch_is_masked_by_window_position_not_batch_index():
    layer = make_layer(shift=2)
    x = torch.randn(3, 8, 12, 8)
    with torch.no_grad():
        together = layer(x)
        alone = torch.cat([layer(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_masked_pairs_get_zero_weight_even_for_huge_dot_products():
    # Swin's -100 mask would leak under ReLU once an unnormalised similarity exceeds 100.
    layer = make_layer(similarity="dot", shift=2)
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        layer.projection.weight.mul_(100)
        assert (layer.projection(x) ** 2).sum(-1).max() > 1000  # similarities far beyond 100
        torch.testing.assert_close(layer(x), naive_layer(layer, x), rtol=1e-4, atol=1e-2)


def test_masks_cached_during_inference_mode_evaluation_still_serve_training():
    layer = make_layer(window=2, shift=1)  # a window size no other test caches first
    x = torch.randn(1, 6, 6, 8)
    with torch.inference_mode():
        layer(x)
    layer(x).sum().backward()
    assert layer.bias_table.grad.abs().sum() > 0


def test_layer_rejects_groups_that_do_not_divide_the_projection():
    with pytest.raises(ValueError, match="divisible"):
        make_layer(proj_dim=6, groups=4)
