"""Benchmarks of the training step and the two-view augmentation, side by side with lightly (the ``bench`` extra).

``timing`` holds the measuring tools (interleaved timing, paired ratios, FLOP counts, the machine's matmul peak,
operator-time shares, JSON lines); ``augment`` the augmentation cases; ``pretrain`` the training-step benchmark behind
``docs/benchmarks.md``. ``scripts/bench_pretrain.py`` and ``scripts/bench_augment.py`` are their command lines.
lightly is imported only when a lightly case runs, so the package imports without it.
"""

from __future__ import annotations
