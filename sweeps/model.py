"""The proxy model: a small pre-norm decoder-only transformer, parametrized with muP.

One file, read top to bottom: config, attention, MLP, block, model, then the helpers that
build it (base shapes for muP), count its parameters exactly and make its optimizer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from mup import MuAdamW, MuReadout, set_base_shapes
from torch import nn

__all__ = [
    "PARAMETRIZATIONS",
    "ModelConfig",
    "Transformer",
    "build_model",
    "count_params",
    "make_optimizer",
]

PARAMETRIZATIONS = ("mup", "sp")


@dataclass
class ModelConfig:
    """Shape of one proxy. `n_heads = width // head_dim`: widening adds heads of fixed size."""

    width: int = 128
    depth: int = 2
    head_dim: int = 32
    seq_len: int = 128
    vocab_size: int = 256
    mlp_ratio: int = 4
    parametrization: str = "mup"
    base_width: int = 64
    # Standard deviation of the embeddings; hidden matrices use init_std / sqrt(fan_in).
    init_std: float = 1.0
    # muP attention logits are attn_mult * q.k / head_dim (a width-independent constant to tune).
    attn_mult: float = 1.0
    # muP zero-initializes the readout; False draws it with muP's 1/fan_in^2 variance
    # instead, which learned faster in short runs here (see the report in results/bench).
    readout_zero_init: bool = True

    def __post_init__(self) -> None:
        for name in ("width", "depth", "head_dim", "seq_len", "vocab_size", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization must be one of {PARAMETRIZATIONS}, got {self.parametrization!r}"
            )
        if self.width % self.head_dim:
            raise ValueError(
                f"width must be a multiple of head_dim, got {self.width=} {self.head_dim=}"
            )
        if self.parametrization == "mup" and (
            self.base_width < self.head_dim or self.base_width % self.head_dim
        ):
            raise ValueError(
                f"base_width must be a positive multiple of head_dim, got {self.base_width=}"
            )
        for name in ("init_std", "attn_mult"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")

    @property
    def n_heads(self) -> int:
        return self.width // self.head_dim

    @property
    def mup(self) -> bool:
        return self.parametrization == "mup"

    def with_width(self, width: int) -> ModelConfig:
        return ModelConfig(**{**asdict(self), "width": width})

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.query = nn.Linear(cfg.width, cfg.width, bias=False)
        self.key = nn.Linear(cfg.width, cfg.width, bias=False)
        self.value = nn.Linear(cfg.width, cfg.width, bias=False)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=False)
        # muP: attention logits scale as 1/d_head (keys and queries become correlated during
        # training, so their dot product grows like d_head, not sqrt(d_head)).
        self.scale = cfg.attn_mult / cfg.head_dim if cfg.mup else 1.0 / math.sqrt(cfg.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            lin(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
            for lin in (self.query, self.key, self.value)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.width, cfg.mlp_ratio * cfg.width, bias=False)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.width, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg)
        self.ln_mlp = nn.LayerNorm(cfg.width)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = nn.Embedding(cfg.seq_len, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.ln_final = nn.LayerNorm(cfg.width)
        if cfg.mup:
            # MuReadout divides its input by width/base_width; zero init as muP prescribes.
            self.readout = MuReadout(
                cfg.width, cfg.vocab_size, bias=False, readout_zero_init=cfg.readout_zero_init
            )
        else:
            self.readout = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        cfg = self.cfg
        for emb in (self.token_embedding, self.position_embedding):
            nn.init.normal_(emb.weight, std=cfg.init_std)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module is not self.readout:
                std = cfg.init_std / math.sqrt(module.in_features)
                if name.endswith(("proj", "down")):
                    std /= math.sqrt(2 * cfg.depth)  # residual branches, as in GPT-2
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if cfg.mup:
            if cfg.readout_zero_init:
                nn.init.zeros_(self.readout.weight)
            else:  # muP readout variance ~ 1/fan_in^2: with MuReadout, output std ~ wm^-1/2
                width_mult = cfg.width / cfg.base_width
                std = cfg.init_std * math.sqrt(width_mult / cfg.width)
                nn.init.normal_(self.readout.weight, std=std)
            for block in self.blocks:
                nn.init.zeros_(block.attn.query.weight)
        else:
            nn.init.normal_(self.readout.weight, std=cfg.init_std / math.sqrt(cfg.width))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (batch, seq, vocab) for token ids (batch, seq)."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.readout(self.ln_final(x))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def build_model(cfg: ModelConfig) -> Transformer:
    """The model for `cfg`; for muP with base shapes set from a base and a delta model."""
    model = Transformer(cfg)
    if cfg.mup:
        # The base and delta models only tell mup which dimensions grow with width (base vs
        # delta) and by how much (base vs model). They are small, so plain CPU models are
        # cheaper than the meta device's one-off start-up cost (seconds).
        base = Transformer(cfg.with_width(cfg.base_width))
        delta = Transformer(cfg.with_width(2 * cfg.base_width))
        # rescale_params=False: our init is already muP's (zero readout, 1/fan_in hidden).
        set_base_shapes(model, base, delta=delta, rescale_params=False)
    return model


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """(non-embedding, total) parameter counts of `build_model(cfg)`, from the shapes alone.

    Non-embedding (Kaplan's N) excludes the token and position embeddings but keeps the
    readout, which is not tied to the embedding here.
    """
    w, f = cfg.width, cfg.mlp_ratio * cfg.width
    per_block = 4 * w * w + 2 * w * f + 2 * (2 * w)  # attention, MLP, two LayerNorms
    non_embedding = cfg.depth * per_block + 2 * w + w * cfg.vocab_size  # + final LN, readout
    embedding = (cfg.vocab_size + cfg.seq_len) * w
    return non_embedding, non_embedding + embedding


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.Optimizer:
    """AdamW (MuAdamW for muP) with weight decay on matrices only.

    Every param group gets `lr_scale`: its LR as a multiple of the global `lr` (muP divides
    hidden matrices' LR by width/base_width). The trainer sets `group["lr"] = lr_t *
    group["lr_scale"]` at each step, so per-group muP scaling survives any schedule.
    """
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": matrices, "weight_decay": weight_decay},
        {"params": vectors, "weight_decay": 0.0},
    ]
    mup = isinstance(model, Transformer) and model.cfg.mup
    factory = MuAdamW if mup else torch.optim.AdamW
    optimizer = factory(groups, lr=lr, betas=betas)
    for group in optimizer.param_groups:
        group["lr_scale"] = group["lr"] / lr
    return optimizer
