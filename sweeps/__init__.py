"""Proxy sweeps: the muP transformer (model), its corpus (data), one training run (train),
the coordinate check, benchmarks, and the Optuna sweep engine (engine), run as `python -m sweeps`.

Submodules are imported on use: `import sweeps` stays cheap (no torch, no optuna).
"""
