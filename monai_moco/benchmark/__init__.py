"""Benchmarks behind ``docs/benchmarks.md``: the training step, the two-view augmentation and the time to a kNN AUC
target side by side with lightly (the ``bench`` extra), and the ViT stem comparison.

``timing`` holds the measuring tools (interleaved timing, paired ratios, FLOP counts, the machine's matmul peak,
operator-time shares, JSON lines); ``augment`` the augmentation cases; ``pretrain`` the training-step benchmark;
``time_to_accuracy`` the bundle's MoCo recipe vs lightly's loop until a kNN AUC target; ``vit_stems`` the patchify vs
conv-stem vs top-K comparison. ``scripts/bench_pretrain.py``, ``bench_augment.py``, ``bench_time_to_accuracy.py`` and
``compare_vit_stems.py`` are their command lines. lightly is imported only when a lightly case runs.
"""

from __future__ import annotations
