"""Time-to-accuracy of MoCo pretraining (JSON lines on stdout): training wall time of the ``moco_resnet50`` CPU study
recipe until the kNN AUC of the bundle's fixed Kermany validation subset reaches a target, the bundle's own components
against a loop from lightly's public parts, interleaved epoch by epoch in one process.

What is measured and the JSON lines it prints: ``monai_moco.benchmark.time_to_accuracy``.

Example::

    .venv/bin/python scripts/bench_time_to_accuracy.py --target 0.93 > runs/bench_tta.jsonl
    .venv/bin/python scripts/bench_time_to_accuracy.py --max_images 256 --image_size 32 --max_epochs 2 --ours_only
"""

from __future__ import annotations

import sys

from monai_moco.benchmark.time_to_accuracy import main

if __name__ == "__main__":
    sys.exit(main())
