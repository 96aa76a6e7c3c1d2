"""Benchmark two-view augmentation throughput on real chest X-rays: per-sample MONAI path vs batched tensor path.

Prints one JSON line per (case, output size): input images per second, each image giving two augmented views. The
cases (including lightly's ``MoCoV2Transform``, run when lightly from the ``bench`` extra is installed) live in
``monai_moco.benchmark.augment``, which ``monai_moco.benchmark.pretrain`` reuses beside the training step.

Example::

    .venv/bin/python scripts/bench_augment.py --data_dir ../shared/data/kermany_pneumonia_224 --quick
    .venv/bin/python scripts/bench_augment.py --cases batched_two_view --sizes 224 96 --threads 2
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from monai_moco.benchmark.augment import CASES, augment_throughput, lightly_available, load_images
from monai_moco.benchmark.timing import machine_info, print_json_line


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", type=Path, default=Path("../shared/data/kermany_pneumonia_224"))
    default_cases = [c for c in CASES if lightly_available() or not c.startswith("lightly")]
    parser.add_argument("--cases", nargs="+", default=default_cases, choices=list(CASES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 128], help="output view sizes")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--images", type=int, default=256, help="distinct real images to cycle through")
    parser.add_argument("--min_seconds", type=float, default=5.0, help="time each case for at least this long")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one data-loader core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="64 images, 1 s per case: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.min_seconds = args.batch_size, 1.0
    torch.set_num_threads(args.threads)
    images = load_images(args.data_dir, args.images)
    for size in args.sizes:
        for name in args.cases:
            result = augment_throughput(CASES[name](size, args.seed), images, args.batch_size, args.min_seconds)
            record = {
                "case": name,
                "input": list(images.shape[-2:]),
                "output": size,
                "batch_size": args.batch_size,
                **result,
                "views_per_image": 2,
                **machine_info(),
            }
            print_json_line(record)


if __name__ == "__main__":
    main()
