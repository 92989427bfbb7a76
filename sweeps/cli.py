"""Command line of the sweeps package: train one proxy, run the coordinate check, and (through
sweeps.engine) run and export Optuna sweeps.

    python -m sweeps train --width 128 --depth 2 --lr 0.01 --tokens 2e6 --schedule cosine
    python -m sweeps coordcheck --out results/coordcheck
    python -m sweeps run ... / python -m sweeps export ...   (sweeps/engine.py)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _count(text: str) -> int:
    """Integers written as 2e6 or 2_000_000."""
    value = float(text.replace("_", ""))
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def _json_safe(value):
    """`value` with every non-finite float (a diverged run's NaN loss) as None: JSON has no NaN
    or Infinity, and `json.dumps` would write them, invalid, by default."""
    if isinstance(value, dict):
        return {key: _json_safe(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _add_train(sub) -> None:
    from scaling.schedules import SCHEDULES

    p = sub.add_parser("train", help="train one proxy and print its result")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--parametrization", choices=("mup", "sp"), default="mup")
    p.add_argument("--base-width", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01, help="peak LR (muP: the global LR)")
    p.add_argument("--batch-tokens", type=_count, default=4096)
    p.add_argument("--tokens", type=_count, default=1_000_000, help="training tokens D")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--warmup-frac", type=float, default=0.02)
    p.add_argument("--final-lr-frac", type=float, default=0.1)
    p.add_argument("--decay-frac", type=float, default=0.2, help="wsd: share of the cooldown")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-tokens", type=_count, default=65536)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on the CPU",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--corpus", default=None, help="text file/folder, prepared folder or .bin")
    p.add_argument("--vocab-size", type=int, default=None, help="for a .bin corpus")
    p.add_argument(
        "--corpus-dtype",
        choices=("uint16", "uint32"),
        default=None,
        help="token dtype of a .bin corpus (default: uint16 up to 65536 ids, else uint32)",
    )
    p.add_argument("--curve", type=Path, default=None, help="write the loss curve CSV here")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _train(args) -> int:
    from scaling.schedules import ScheduleSpec
    from sweeps.model import ModelConfig
    from sweeps.train import TrainConfig, train

    vocab_size = args.vocab_size or 256
    config = TrainConfig(
        model=ModelConfig(
            width=args.width, depth=args.depth, head_dim=args.head_dim, seq_len=args.seq_len,
            vocab_size=vocab_size, parametrization=args.parametrization,
            base_width=args.base_width,
        ),
        lr=args.lr, batch_tokens=args.batch_tokens, tokens=args.tokens,
        schedule=ScheduleSpec(
            name=args.schedule, warmup_steps=args.warmup_steps, warmup_frac=args.warmup_frac,
            final_lr_frac=args.final_lr_frac, decay_frac=args.decay_frac,
        ),
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_every=args.eval_every,
        eval_tokens=args.eval_tokens, seed=args.seed, device=args.device, precision=args.precision,
        corpus=args.corpus, corpus_vocab_size=args.vocab_size, corpus_dtype=args.corpus_dtype,
        threads=args.threads,
    )  # fmt: skip
    result = train(config, progress=True)
    row = result.to_row()
    if args.curve is not None:
        args.curve.parent.mkdir(parents=True, exist_ok=True)
        result.curve.to_csv(args.curve, index=False)
    if args.json:
        print(json.dumps(_json_safe(row), default=str, allow_nan=False))
    else:
        status = "DIVERGED" if result.diverged else f"val loss {result.loss:.4f}"
        print(
            f"{status} | N={result.n_params:,} (total {result.n_params_total:,}) | "
            f"D={result.tokens:,} tokens in {result.steps} steps | lr={result.lr:g} | "
            f"{result.wall_seconds:.1f} s on {result.device} "
            f"({result.tokens_trained / result.wall_seconds:,.0f} tokens/s)"
        )
    return 0


def _add_coordcheck(sub) -> None:
    p = sub.add_parser("coordcheck", help="activation sizes by width, muP beside SP")
    p.add_argument("--out", type=Path, default=Path("results/coordcheck"))
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tolerance", type=float, default=None, help="max |slope| for a pass")


def _coordcheck(args) -> int:
    import torch

    from sweeps import coordcheck

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = coordcheck.run(
        widths=args.widths, steps=args.steps, lr=args.lr, seeds=args.seeds, depth=args.depth
    )
    tolerance = coordcheck.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    print(coordcheck.write(sizes, args.out, tolerance))
    # Exit status 1 when muP fails its own check: usable as a CI gate.
    return 0 if coordcheck.check(sizes, tolerance).get("mup", {}).get("passed", True) else 1


# Subcommands owned by the sweep engine (sweeps/engine.py): `engine.main(argv)` gets the whole
# argument list, starting with the subcommand name, and parses it itself.
ENGINE_COMMANDS = {
    "run": "run an Optuna sweep from a config (sweeps/engine.py)",
    "export": "export a sweep's runs and curves tables (sweeps/engine.py)",
    "status": "show a sweep's progress (sweeps/engine.py)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweeps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_coordcheck(sub)
    for name, help_text in ENGINE_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("engine_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ENGINE_COMMANDS:
        from sweeps import engine  # lazily: optuna is slow to import

        return engine.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("threads", "steps", "seeds"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    if args.command == "coordcheck" and len(set(args.widths)) < 2:
        parser.error(f"--widths needs at least two widths, got {args.widths}")
    try:
        if args.command == "train":
            return _train(args)
        return _coordcheck(args)
    except (ValueError, FileNotFoundError) as exc:
        # Bad settings or a missing corpus: one line naming the problem, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
