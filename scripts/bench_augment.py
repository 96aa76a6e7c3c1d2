"""Benchmark two-view augmentation throughput on real chest X-rays: per-sample MONAI path vs batched tensor path.

Prints one JSON line per (case, output size): input images per second, each image giving two augmented views
(SimCLR, Chen et al., ICML 2020; MoCo v2, Chen et al., 2020; MoCo-CXR, Sowrirajan et al., MIDL 2021 recipes as in
``monai_moco.transforms.ssl``) and lightly's ``MoCoV2Transform`` (case ``lightly_mocov2``, run when lightly from the
``bench`` extra is installed). Cases live in ``CASES``; a new one is one function decorated with ``@case("name")``
that returns ``run(batch) -> None``. ``scripts/bench_pretrain.py`` reuses these cases side by side with the training
step.

Example::

    .venv/bin/python scripts/bench_augment.py --data_dir ../shared/data/kermany_pneumonia_224 --quick
    .venv/bin/python scripts/bench_augment.py --cases batched_two_view --sizes 224 96 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_moco.transforms.ssl import BatchedTwoView, TwoView, cxr_ssl_augmentation
from monai_moco.utils.benchmark import machine_info, print_json_line

#: a case: ``make(output_size, seed) -> run(batch)``, where ``batch`` is ``B x 1 x H x W`` float in [0, 1] on the CPU.
CaseFactory = Callable[[int, int], Callable[[torch.Tensor], object]]
CASES: dict[str, CaseFactory] = {}


def case(name: str) -> Callable[[CaseFactory], CaseFactory]:
    """Register a benchmark case under ``name``.

    Args:
        name: the case name printed in the JSON line and accepted by ``--cases``.

    Returns:
        A decorator for ``make(output_size, seed) -> run(batch)``.

    Example::

        @case("lightly_mocov2")
        def _lightly(size: int, seed: int):
            from lightly.transforms import MoCoV2Transform  # the bench extra, imported only when run

            t = MoCoV2Transform(input_size=size)
            return lambda batch: [t(to_pil(img)) for img in batch]
    """

    def register(make: CaseFactory) -> CaseFactory:
        CASES[name] = make
        return make

    return register


@case("monai_compose")
def _monai_compose(size: int, seed: int) -> Callable[[torch.Tensor], object]:
    """Per-sample ``TwoView(cxr_ssl_augmentation())`` on MetaTensors, as a MONAI data-loader worker runs it."""
    two = TwoView(cxr_ssl_augmentation(spatial_size=size)).set_random_state(seed=seed)
    return lambda batch: [two(MetaTensor(img)) for img in batch]


@case("monai_compose_no_meta")
def _monai_compose_no_meta(size: int, seed: int) -> Callable[[torch.Tensor], object]:
    """The same with MONAI meta tracking switched off during the augmentation (``TwoView(track_meta=False)``)."""
    two = TwoView(cxr_ssl_augmentation(spatial_size=size), track_meta=False).set_random_state(seed=seed)
    return lambda batch: [two(MetaTensor(img)) for img in batch]


@case("lightly_mocov2")
def _lightly_mocov2(size: int, seed: int) -> Callable[[torch.Tensor], object]:
    """lightly's ``MoCoV2Transform`` (torchvision ops on PIL images, as lightly's data loaders run it), two views per
    image; each radiograph is converted to the RGB PIL image lightly's datasets decode to (counted in the timing).

    Raises:
        ImportError: when lightly (the ``bench`` extra) is not installed.
    """
    from lightly.transforms import MoCoV2Transform  # the bench extra, imported only when this case runs

    torch.manual_seed(seed)  # torchvision's random ops draw from torch's global generator
    t = MoCoV2Transform(input_size=size)

    def run(batch: torch.Tensor) -> object:
        arrays = batch.squeeze(1).mul(255).round().to(torch.uint8).numpy()
        return [t(Image.fromarray(a).convert("RGB")) for a in arrays]

    return run


def lightly_available() -> bool:
    """Returns: whether lightly (the ``bench`` extra) can be imported."""
    import importlib.util

    return importlib.util.find_spec("lightly") is not None


@case("batched_two_view")
def _batched_two_view(size: int, seed: int) -> Callable[[torch.Tensor], object]:
    """``BatchedTwoView`` on the whole batch (on the training device; here the CPU)."""
    two = BatchedTwoView(spatial_size=size, seed=seed)
    return lambda batch: two(batch)


def load_images(data_dir: Path, count: int) -> torch.Tensor:
    """The first ``count`` training radiographs listed in ``labels.csv`` as ``N x 1 x H x W`` float in [0, 1].

    Args:
        data_dir: the ``kermany_pneumonia_224`` folder.
        count: how many images.

    Returns:
        The images, read as grayscale.

    Raises:
        FileNotFoundError: when ``data_dir`` has no ``labels.csv`` (see ``../shared/data/DATA.md``).
    """
    labels = data_dir / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found: --data_dir must be the kermany_pneumonia_224 folder.")
    with open(labels, newline="") as f:
        paths = [data_dir / r["path"] for r in csv.DictReader(f) if r["split"] == "train"][:count]
    arrays = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255.0 for p in paths]
    return torch.from_numpy(np.stack(arrays))[:, None]


def bench(run: Callable[[torch.Tensor], object], images: torch.Tensor, batch_size: int, min_seconds: float) -> dict:
    """Time ``run`` over consecutive batches (one warm-up batch first) until ``min_seconds`` and all batches passed.

    Args:
        run: the case's ``run(batch)``.
        images: all images, cycled through in batches.
        batch_size: images per call.
        min_seconds: the shortest timing.

    Returns:
        ``images`` done, ``seconds`` taken and ``images_per_s`` (input images; each gives two views).
    """
    batches = list(images.split(batch_size))
    run(batches[0])
    done, start = 0, time.perf_counter()
    while True:
        for b in batches:
            run(b)
            done += len(b)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return {"images": done, "seconds": round(elapsed, 3), "images_per_s": round(done / elapsed, 1)}


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
            result = bench(CASES[name](size, args.seed), images, args.batch_size, args.min_seconds)
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
