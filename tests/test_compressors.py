"""Token compressors: shapes for every valid V, gradients, question use, locality, seeds, V rules, FLOPs.

Every compressor is built from its real ``conf/compressor/<name>.yaml`` entry at the
mini-study scale (8x8 grid, 64 channels, two encoder layers of multi-level features),
so these tests also check that the configs and the classes agree. Runs in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from sweep.models.compressors import build_compressor, compressor_class, valid_visual_tokens
from sweep.models.compressors.base import Compressor, format_counts
from sweep.models.compressors.regions import RegionAttention, from_map, to_map
from sweep.specs.models import CompressorEntry

CONF = Path(__file__).resolve().parents[1] / "conf" / "compressor"
NAMES = ["avgpool", "tokenpacker", "quecc", "resampler", "pixelshuffle"]
GRID, IN_DIM, LEVEL_DIM, QUESTION_DIM, OUT_DIM, BATCH = 8, 64, 128, 32, 48, 2
PAPER_V = [1, 4, 16, 36, 64, 144, 576]


def entry(name: str, **overrides: Any) -> CompressorEntry:
    """The typed catalogue entry of ``conf/compressor/<name>.yaml``, with optional kwarg overrides."""
    loaded = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    return CompressorEntry.parse({**loaded[name], **overrides}, f"compressor.{name}")


def build(name: str, visual_tokens: int, grid: int = GRID, **overrides: Any) -> Compressor:
    return build_compressor(
        entry(name, **overrides),
        IN_DIM,
        OUT_DIM,
        grid,
        visual_tokens,
        level_dim=LEVEL_DIM,
        question_dim=QUESTION_DIM,
    )


def inputs(seed: int = 0, grid: int = GRID, batch: int = BATCH) -> tuple[torch.Tensor, ...]:
    """feats (B, P, C), levels (B, P, C_l), question (B, C_q) from a private generator."""
    g = torch.Generator().manual_seed(seed)
    p = grid * grid
    return (
        torch.randn(batch, p, IN_DIM, generator=g),
        torch.randn(batch, p, LEVEL_DIM, generator=g),
        torch.randn(batch, QUESTION_DIM, generator=g),
    )


CASES = [(name, v) for name in NAMES for v in valid_visual_tokens(entry(name), GRID)]


@pytest.mark.parametrize(("name", "visual_tokens"), CASES)
def test_output_shape_for_every_valid_v(name: str, visual_tokens: int) -> None:
    out = build(name, visual_tokens)(*inputs())
    assert out.shape == (BATCH, visual_tokens, OUT_DIM)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "overrides", "grid", "expected"),
    [
        ("avgpool", {}, 8, [1, 4, 16, 64]),
        ("tokenpacker", {}, 8, [1, 4, 16, 64]),
        ("quecc", {}, 8, [1, 4, 16, 64]),
        ("tokenpacker", {}, 24, [1, 4, 9, 16, 36, 64, 144, 576]),
        ("quecc", {}, 24, [1, 4, 9, 16, 36, 64, 144, 576]),
        ("resampler", {}, 8, list(range(1, 65))),
        ("resampler", {"num_queries": 16}, 24, list(range(1, 17))),
        ("pixelshuffle", {}, 8, [4, 16, 64]),
        ("pixelshuffle", {}, 24, [36, 64, 144, 576]),
        ("pixelshuffle", {"max_ratio": 8}, 8, [1, 4, 16, 64]),
    ],
)
def test_valid_v_rules_without_building(name: str, overrides: dict, grid: int, expected: list[int]) -> None:
    # The planner's path: the yaml entry and the grid, no module built.
    assert valid_visual_tokens(entry(name, **overrides), grid) == expected


@pytest.mark.parametrize("name", ["tokenpacker", "quecc", "resampler"])
def test_paper_token_counts_are_reachable_on_the_clip_grid(name: str) -> None:
    assert set(PAPER_V) <= set(valid_visual_tokens(entry(name), 24))


@pytest.mark.parametrize(
    ("name", "bad_v", "cls_name", "listing"),
    [
        ("avgpool", 36, "AvgPool", "[1, 4, 16, 64]"),
        ("tokenpacker", 9, "TokenPacker", "[1, 4, 16, 64]"),
        ("quecc", 2, "QueCC", "[1, 4, 16, 64]"),
        ("resampler", 65, "Resampler", "[1..64]"),
        ("pixelshuffle", 1, "PixelShuffle", "[4, 16, 64]"),
    ],
)
def test_impossible_v_is_rejected_naming_compressor_v_and_valid_values(
    name: str, bad_v: int, cls_name: str, listing: str
) -> None:
    assert bad_v not in valid_visual_tokens(entry(name), GRID)
    with pytest.raises(ValueError) as err:
        build(name, bad_v)
    message = str(err.value)
    assert cls_name in message and f"V={bad_v}" in message and listing in message


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, 4)
    model(*inputs()).square().mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, f"{name}.{pname}"


def test_quecc_output_depends_on_the_question() -> None:
    torch.manual_seed(0)
    model = build("quecc", 4).eval()
    feats, levels, question = inputs(0)
    other = inputs(1)[2]
    same = model(feats, levels, question)
    assert torch.equal(same, model(feats, levels, question.clone()))
    changed = model(feats, levels, other)
    # Every visual token of every sample moves when the question does.
    assert ((same - changed).abs().amax(dim=-1) > 1e-4).all()


def test_quecc_does_not_backpropagate_into_the_question() -> None:
    model = build("quecc", 4)
    feats, levels, question = inputs()
    question.requires_grad_(True)
    out = model(feats, levels, question)
    assert not torch.autograd.grad(out.sum(), question, allow_unused=True, materialize_grads=True)[0].any()


@pytest.mark.parametrize("visual_tokens", [1, 4, 16])
def test_quecc_condenses_each_region_as_its_depthwise_conv_does(visual_tokens: int) -> None:
    torch.manual_seed(0)
    model = build("quecc", visual_tokens)
    tokens = torch.randn(BATCH, GRID * GRID, model.dim, requires_grad=True)
    conv = from_map(model.downsample(to_map(tokens, GRID)))
    condensed = model.condense(tokens)
    torch.testing.assert_close(condensed, conv, rtol=1e-5, atol=1e-5)
    # The same gradients too, for the conv's weights and for the tokens.
    grads = torch.autograd.grad(condensed.square().sum(), [tokens, model.downsample.weight, model.downsample.bias])
    expected = torch.autograd.grad(conv.square().sum(), [tokens, model.downsample.weight, model.downsample.bias])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tokenpacker", "quecc"])
def test_single_token_sees_the_whole_grid(name: str) -> None:
    feats, levels, question = inputs()
    levels.requires_grad_(True)
    out = build(name, 1)(feats, levels, question)
    assert out.shape == (BATCH, 1, OUT_DIM)
    (grad,) = torch.autograd.grad(out.sum(), levels)
    assert (grad.abs().sum(dim=-1) > 0).all(), "some patch does not reach the single token"


@pytest.mark.parametrize("name", ["tokenpacker", "quecc"])
def test_each_query_reads_only_its_own_region(name: str) -> None:
    model = build(name, 4)  # 2x2 queries, each over a 4x4 region of the 8x8 grid
    feats, levels, question = inputs()
    before = model(feats, levels, question)
    mask = torch.zeros(GRID, GRID, dtype=torch.bool)
    mask[:4, :4] = True  # the top-left region, read by query 0
    touched_levels = levels + 3.0 * mask.flatten()[None, :, None]
    touched_feats = feats + 3.0 * mask.flatten()[None, :, None]
    after = model(touched_feats, touched_levels, question)
    moved = (after - before).abs().amax(dim=(0, 2))
    assert moved[0] > 1e-4
    assert torch.all(moved[1:] == 0)


@pytest.mark.parametrize("heads", [1, 4])
def test_region_attention_is_multihead_attention_over_each_region(heads: int) -> None:
    """TokenPacker's and QueCC's originals run nn.MultiheadAttention per region; same weights, same output."""
    b, q, r, dim, out_dim = 2, 4, 9, 16, 8
    torch.manual_seed(0)
    attn = RegionAttention(dim, heads, out_dim)
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        key_bias = torch.randn(dim)  # has no effect on the output: the softmax drops it
        mha.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.query.bias, key_bias, attn.value.bias]))
        mha.out_proj.weight.copy_(torch.eye(dim))
        mha.out_proj.bias.zero_()
    g = torch.Generator().manual_seed(1)
    queries, keys, values = (torch.randn(b, q, *s, dim, generator=g) for s in ((), (r,), (r,)))
    one_query_per_region = mha(queries.reshape(b * q, 1, dim), keys.reshape(b * q, r, dim),
                               values.reshape(b * q, r, dim), need_weights=False)[0]
    expected = attn.out(one_query_per_region.reshape(b, q, dim))
    torch.testing.assert_close(attn(queries, keys, values), expected, rtol=1e-5, atol=1e-5)


def test_pixelshuffle_keeps_every_patch() -> None:
    feats, levels, question = inputs()
    feats.requires_grad_(True)
    (grad,) = torch.autograd.grad(build("pixelshuffle", 4)(feats).sum(), feats)
    assert (grad.abs().sum(dim=-1) > 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_initialisation_is_deterministic_by_seed(name: str) -> None:
    states = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        states.append(build(name, 4).state_dict())
    assert states[0].keys() == states[1].keys() and len(states[0]) > 0
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_resampler_prefix_property_and_mqt_training() -> None:
    torch.manual_seed(0)
    full = build("resampler", 64, mqt=True).eval()
    feats = inputs()[0]
    out64 = full(feats)
    # Queries do not see each other, so a smaller V is exactly a prefix of a larger one.
    full.set_visual_tokens(16)
    assert torch.allclose(full(feats), out64[:, :16], atol=1e-6)
    with pytest.raises(ValueError, match="V=65"):
        full.set_visual_tokens(65)
    full.train()
    torch.manual_seed(1)
    counts = {full(feats).shape[1] for _ in range(12)}
    assert len(counts) > 1 and all(1 <= n <= 64 for n in counts)
    torch.manual_seed(1)
    assert counts == {full(feats).shape[1] for _ in range(12)}, "prefix lengths must replay under a seed"


def test_resampler_without_mqt_trains_on_its_v() -> None:
    model = build("resampler", 4).train()
    assert model(inputs()[0]).shape == (BATCH, 4, OUT_DIM)


FLOP_CASES = [(n, g, v) for n in NAMES for g, v in ((8, 4), (8, 64), (24, 36))]


@pytest.mark.parametrize(("name", "grid", "visual_tokens"), FLOP_CASES)
def test_flops_match_an_independent_count(name: str, grid: int, visual_tokens: int) -> None:
    model = build(name, visual_tokens, grid=grid)
    feats, levels, question = inputs(grid=grid, batch=1)
    # The math backend makes attention visible to the counter as plain matmuls.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(feats, levels, question)
    counted = counter.get_total_flops()
    # The counter sees matmuls and convolutions only; the region attention (broadcast
    # products), pooling and interpolation it misses are at most 16 FLOPs per patch channel.
    missed = 16 * grid * grid * IN_DIM
    assert counted <= model.flops() <= counted + missed


@pytest.mark.parametrize("name", NAMES)
def test_needs_flags_match_what_forward_reads(name: str) -> None:
    cls = compressor_class(entry(name))
    assert cls.needs_levels == (name in {"tokenpacker", "quecc"})
    assert cls.needs_question == (name == "quecc")


def test_missing_inputs_are_reported() -> None:
    feats, levels, question = inputs()
    with pytest.raises(ValueError, match="levels"):
        build("tokenpacker", 4)(feats)
    with pytest.raises(ValueError, match="question"):
        build("quecc", 4)(feats, levels)
    with pytest.raises(ValueError, match="question_dim"):
        build_compressor(entry("quecc"), IN_DIM, OUT_DIM, GRID, 4, level_dim=LEVEL_DIM)


def test_format_counts_shortens_runs() -> None:
    assert format_counts([1, 4, 16, 64]) == "[1, 4, 16, 64]"
    assert format_counts(list(range(1, 577))) == "[1..576]"
    assert format_counts([1, 2, 5, 6, 7, 9]) == "[1, 2, 5..7, 9]"
