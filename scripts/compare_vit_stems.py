"""Patchify ViT vs ConvStemViT vs ConvStemViT + top-K patch head, pretrained by MoCo-v2 on the same small budget.

What each arm is, what is reported and the output files: ``monai_moco.benchmark.vit_stems``. The current result and
the command behind it: ``docs/benchmarks.md``.

Example::

    .venv/bin/python scripts/compare_vit_stems.py --quick --output_dir runs/compare_vit_stems_quick
    .venv/bin/python scripts/compare_vit_stems.py --from_json docs/figures/compare_vit_stems.json --output_dir runs/replot
"""

from __future__ import annotations

from monai_moco.benchmark.vit_stems import main

if __name__ == "__main__":
    main()
