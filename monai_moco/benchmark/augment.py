"""Two-view augmentation throughput cases on real chest X-rays: the per-sample MONAI path, the batched tensor path and
lightly's ``MoCoV2Transform``, for ``scripts/bench_augment.py`` and :mod:`monai_moco.benchmark.pretrain`.

Each case (SimCLR, Chen et al., ICML 2020; MoCo v2, Chen et al., 2020; MoCo-CXR, Sowrirajan et al., MIDL 2021 recipes
as in ``monai_moco.transforms.ssl``) makes two augmented views of every image of a batch. A new case is one function
decorated with ``@case("name")`` that returns ``run(batch)``. lightly (the ``bench`` extra) is imported only when its
case runs.

Example::

    images = load_images(Path("../shared/data/kermany_pneumonia_224"), 64)
    augment_throughput(CASES["monai_compose"](224, 0), images, batch_size=32, min_seconds=1.0)
"""

from __future__ import annotations

import csv
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_moco.transforms.ssl import BatchedTwoView, TwoView, cxr_ssl_augmentation

__all__ = ["CASES", "CaseFactory", "augment_throughput", "case", "lightly_available", "load_images"]

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


def augment_throughput(run: Callable[[torch.Tensor], object], images: torch.Tensor, batch_size: int, min_seconds: float) -> dict:
    """Time ``run`` over consecutive batches (one warm-up batch first) until ``min_seconds`` and all batches passed.

    Args:
        run: the case's ``run(batch)``.
        images: all images, cycled through in batches.
        batch_size: images per call.
        min_seconds: the shortest timing.

    Returns:
        ``images`` done, ``seconds`` taken and ``images_per_s`` (input images; each gives two views).

    Example::

        images = load_images(Path("../shared/data/kermany_pneumonia_224"), 64)
        augment_throughput(CASES["batched_two_view"](128, 0), images, batch_size=32, min_seconds=1.0)
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
