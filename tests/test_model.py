"""The proxy model: exact parameter counts, muP base shapes and init, the optimizer groups."""

from __future__ import annotations

import pytest
import torch

from sweeps.model import ModelConfig, build_model, count_params, make_optimizer


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: one thread is fastest, and does not stall on a busy machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("parametrization", ["mup", "sp"])
@pytest.mark.parametrize(
    "shape", [dict(width=64, depth=1), dict(width=96, depth=3, mlp_ratio=2, seq_len=40)]
)
def test_count_params_is_exact(parametrization, shape):
    cfg = ModelConfig(parametrization=parametrization, **shape)
    model = build_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.token_embedding.weight.numel() + model.position_embedding.weight.numel()
    assert count_params(cfg) == (total - embedding, total)


def test_mup_zero_inits_readout_and_query_and_sets_base_shapes():
    model = build_model(ModelConfig(width=128, base_width=64))
    assert torch.count_nonzero(model.readout.weight) == 0
    for block in model.blocks:
        assert torch.count_nonzero(block.attn.query.weight) == 0
        assert torch.count_nonzero(block.attn.key.weight) > 0
    assert model.readout.weight.infshape.width_mult() == 2.0
    assert model.blocks[0].mlp.up.weight.infshape.width_mult() == 2.0
    x = torch.randint(0, 256, (2, 16))
    # Zero readout: a uniform prediction, whatever the input.
    assert model.loss(x, x).item() == pytest.approx(torch.log(torch.tensor(256.0)).item())


def test_sp_uses_plain_linear_readout_and_sqrt_attention_scale():
    model = build_model(ModelConfig(width=128, parametrization="sp"))
    assert type(model.readout) is torch.nn.Linear
    assert torch.count_nonzero(model.readout.weight) > 0
    assert model.blocks[0].attn.scale == pytest.approx(32**-0.5)
    assert build_model(ModelConfig(width=128)).blocks[0].attn.scale == pytest.approx(1 / 32)


def test_mup_optimizer_scales_hidden_lr_by_width_and_decays_matrices_only():
    lr, wd = 0.02, 0.1
    model = build_model(ModelConfig(width=256, base_width=64))
    optimizer = make_optimizer(model, lr, weight_decay=wd)
    scale_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            scale_of[id(p)] = (group["lr_scale"], group["weight_decay"], group["lr"])
    hidden = model.blocks[0].mlp.up.weight
    assert scale_of[id(hidden)][0] == pytest.approx(64 / 256)
    assert scale_of[id(hidden)][2] == pytest.approx(lr * 64 / 256)
    assert scale_of[id(model.readout.weight)][0] == pytest.approx(1.0)
    assert scale_of[id(model.blocks[0].ln_attn.weight)][1] == 0.0  # vectors: no decay
    assert scale_of[id(model.token_embedding.weight)][1] > 0.0


def test_sp_optimizer_is_plain_adamw():
    model = build_model(ModelConfig(width=128, parametrization="sp"))
    optimizer = make_optimizer(model, 0.01)
    assert type(optimizer) is torch.optim.AdamW
    assert all(group["lr_scale"] == 1.0 for group in optimizer.param_groups)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(width=100), "width"),
        (dict(parametrization="xp"), "parametrization"),
        (dict(depth=0), "depth"),
        (dict(base_width=48), "base_width"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_mup_readout_can_start_random_with_mup_scaling():
    narrow, wide = (
        build_model(ModelConfig(width=w, base_width=64, readout_zero_init=False)) for w in (64, 256)
    )
    x = torch.randint(0, 256, (4, 32))
    with torch.no_grad():
        logits = [m(x).std().item() for m in (narrow, wide)]
    # muP readout: output ~ width_mult**-0.5, so 4x wider halves the logits' scale.
    assert logits[1] / logits[0] == pytest.approx(0.5, rel=0.25)
