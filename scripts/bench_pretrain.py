"""Benchmark a full contrastive training step of our engines against lightly's reference loop (JSON lines on stdout).

What is measured and the JSON lines it prints: ``monai_moco.benchmark.pretrain``. The current results and the commands
behind them: ``docs/benchmarks.md``.

Example::

    .venv/bin/python scripts/bench_pretrain.py --quick
    .venv/bin/python scripts/bench_pretrain.py --table runs/bench_pretrain.jsonl --plot runs/bench_pretrain.png
"""

from __future__ import annotations

import sys

from monai_moco.benchmark.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
