"""Fixtures of the engine tests: tiny encoders, seeded two-view loaders, a small cache of real Kermany radiographs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder


def make_tiny_encoder(batch_norm: bool = True, out_features: int = 16, seed: int = 0) -> ContrastiveEncoder:
    """A two-conv CNN (optionally with BatchNorm) plus MoCo-v2 head: a few thousand parameters, fast on CPU."""
    torch.manual_seed(seed)
    norm: Callable[[int], nn.Module] = nn.BatchNorm2d if batch_norm else (lambda c: nn.Identity())
    backbone = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), norm(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), norm(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return ContrastiveEncoder(backbone, MoCoV2ProjectionHead(16, 32, out_features))


def make_small_cnn(width: int = 32) -> nn.Module:
    """A four-block strided CNN with BatchNorm for 64 px radiographs (about 1/12 of ResNet-18's compute at 64 px)."""
    layers: list[nn.Module] = []
    chans = [1, width, 2 * width, 4 * width, 4 * width]
    for c_in, c_out in zip(chans, chans[1:], strict=False):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def make_view_batches(n_batches: int = 4, batch_size: int = 8, size: int = 16, seed: int = 0) -> list[dict]:
    """Deterministic batches of two noisy views of random images (a list: a re-iterable 'data loader')."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        img = torch.rand(batch_size, 1, size, size, generator=g)
        batches.append(
            {
                "view1": img + 0.05 * torch.randn(img.shape, generator=g),
                "view2": img + 0.05 * torch.randn(img.shape, generator=g),
            }
        )
    return batches


@pytest.fixture
def tiny_encoder() -> Callable[..., ContrastiveEncoder]:
    return make_tiny_encoder


@pytest.fixture
def view_batches() -> Callable[..., list[dict]]:
    return make_view_batches


@pytest.fixture
def small_cnn() -> Callable[..., nn.Module]:
    return make_small_cnn


@pytest.fixture(scope="session")
def kermany_images_64(kermany_dir: Path) -> torch.Tensor:
    """256 real Kermany training radiographs (128 normal, 128 pneumonia) as a ``256 x 1 x 64 x 64`` tensor in [0, 1]."""
    paths = sorted((kermany_dir / "train" / "NORMAL").glob("*.jpeg"))[:128]
    paths += sorted((kermany_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[:128]
    arrays = [np.asarray(Image.open(p).convert("L").resize((64, 64), Image.BILINEAR), dtype=np.float32) for p in paths]
    return torch.from_numpy(np.stack(arrays)[:, None] / 255.0)
