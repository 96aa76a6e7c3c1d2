"""Fixtures for the two-view augmentation tests: real Kermany radiographs as 1 x H x W tensors, test images."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session")
def kermany_images(kermany_dir: Path) -> torch.Tensor:
    """Six real Kermany training radiographs (3 normal, 3 pneumonia) as an ``N x 1 x 224 x 224`` float tensor in [0, 1]."""
    with open(kermany_dir / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    picked = [r for r in rows if r["label"] == "0"][:3] + [r for r in rows if r["label"] == "1"][:3]
    arrays = [np.asarray(Image.open(kermany_dir / r["path"]).convert("L"), dtype=np.float32) / 255.0 for r in picked]
    return torch.from_numpy(np.stack(arrays))[:, None]


@pytest.fixture(scope="session")
def left_bright() -> torch.Tensor:
    """``1 x 64 x 64``: left half 0.8, right half 0.2 (left/right asymmetric)."""
    img = torch.full((1, 64, 64), 0.2)
    img[..., :32] = 0.8
    return img


@pytest.fixture(scope="session")
def horizontal_bar() -> torch.Tensor:
    """``1 x 96 x 96``: a bright horizontal bar through the centre, 4 px thick, 64 px long."""
    img = torch.zeros(1, 96, 96)
    img[:, 46:50, 16:80] = 1.0
    return img


def _bar_angle(view: torch.Tensor) -> float:
    """Orientation in degrees of the bright structure of a ``1 x H x W`` image (second moments), 0 = horizontal."""
    w = view[0].double().clamp(min=0)
    w = torch.where(w > 0.5, w, torch.zeros_like(w))
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]).double(), torch.arange(w.shape[1]).double(), indexing="ij")
    total = w.sum()
    my, mx = (w * ys).sum() / total, (w * xs).sum() / total
    mu20 = (w * (xs - mx) ** 2).sum()
    mu02 = (w * (ys - my) ** 2).sum()
    mu11 = (w * (xs - mx) * (ys - my)).sum()
    return math.degrees(0.5 * math.atan2(2 * float(mu11), float(mu20 - mu02)))


@pytest.fixture(scope="session")
def bar_angle() -> Callable[[torch.Tensor], float]:
    """Function: orientation (degrees, 0 = horizontal) of the bright structure of a ``1 x H x W`` image."""
    return _bar_angle


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run these tests on one torch thread (as a data-loader worker does), restoring the setting afterwards.

    Per-image MONAI transforms are a stream of tiny ops; with 2 threads on 2 busy cores each op waits for the other
    thread and the per-sample tests run 3-4x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
