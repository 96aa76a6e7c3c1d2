"""Tests for monai_moco.handlers.representation_monitor on real Kermany chest X-rays and a tiny training engine."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from PIL import Image
from torch import nn

from monai_moco.handlers.representation_monitor import RepresentationMonitor, image_label_batch
from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder, build_backbone

SIZE = 64


def _load_kermany(folder: Path, split: str, per_class: int) -> list[dict]:
    """``per_class`` normal and pneumonia images of a split, read as grey 64 px tensors in [0, 1]."""
    with open(folder / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    items = []
    for label in (0, 1):
        for row in [r for r in rows if int(r["label"]) == label][:per_class]:
            img = Image.open(folder / row["path"]).convert("L").resize((SIZE, SIZE), Image.BILINEAR)
            items.append({"image": torch.from_numpy(np.asarray(img, np.float32) / 255.0)[None], "label": label})
    return items


def _loader(items: list[dict], batch_size: int = 16):
    return torch.utils.data.DataLoader(items, batch_size=batch_size)


@pytest.fixture(scope="module")
def kermany_loaders(kermany_dir):
    return _loader(_load_kermany(kermany_dir, "train", 12)), _loader(_load_kermany(kermany_dir, "test", 12))


class _Writer:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))


def _tiny_trainer(loader) -> Engine:
    """One SGD step per batch on a ContrastiveEncoder (a stand-in for MoCoTrainer), network in train mode."""
    torch.manual_seed(0)
    backbone = build_backbone("convstem_vit_tiny", img_size=SIZE, num_layers=2)  # has BatchNorm in its conv stem
    network = ContrastiveEncoder(backbone, MoCoV2ProjectionHead(backbone.out_features, 64, 16)).train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)

    def step(engine: Engine, batch: dict) -> float:
        z = network(batch["image"])
        loss = z.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach().item()

    engine = Engine(step)
    engine.network = network
    return engine


def test_monitor_on_real_images_stores_auc(kermany_loaders):
    train_loader, val_loader = kermany_loaders
    engine = _tiny_trainer(train_loader)
    writer = _Writer()
    probe = "knn"
    monitor = RepresentationMonitor(train_loader, val_loader, interval=2, k=5, summary_writer=writer,
                                    key=f"{probe}_auc", probe=probe, at_start=True)
    monitor.attach(engine)
    seen_modes = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen_modes.append(e.network.training))
    engine.run(train_loader, max_epochs=2, epoch_length=1)
    value = engine.state.metrics[f"{probe}_auc"]
    assert 0.0 <= value <= 1.0
    assert [epoch for epoch, _ in monitor.history] == [0, 2]  # at start, then every 2 epochs
    assert [(tag, step) for tag, _, step in writer.scalars if tag.endswith("_auc")] == [
        (f"{probe}_auc", 0), (f"{probe}_auc", 2)
    ]
    assert engine.network.training and all(seen_modes)  # train mode restored after each probe


def test_features_come_from_embed_and_feature_fn(kermany_loaders):
    """Pixel statistics separate normal from pneumonia images a little; a label-blind feature_fn is honoured."""
    train_loader, val_loader = kermany_loaders
    calls = []

    def feature_fn(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape)
        return nn.functional.adaptive_avg_pool2d(images, 8).flatten(1) - images.mean()

    monitor = RepresentationMonitor(train_loader, val_loader, k=5, feature_fn=feature_fn, network=nn.Identity())
    value = monitor.compute(nn.Identity())
    assert 0.5 < value <= 1.0 and calls and calls[0][1:] == (1, SIZE, SIZE)
    logistic = RepresentationMonitor(train_loader, val_loader, feature_fn=feature_fn, probe="logistic")
    assert 0.5 < logistic.compute(nn.Identity()) <= 1.0

    class Embedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def embed(self, x):
            return feature_fn(self, x)

        def forward(self, x):  # the projection: only for the geometry, never for the probe (embed wins)
            return -feature_fn(self, x)

    assert RepresentationMonitor(train_loader, val_loader, k=5).compute(Embedder()) == pytest.approx(value)


def test_multiclass_and_batch_formats():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 3
    y = torch.arange(60) % 3
    x = centres[y] + 0.2 * torch.randn(60, 8, generator=g)
    pairs = [(x[i : i + 20], y[i : i + 20, None]) for i in range(0, 60, 20)]  # (image, B x 1 label) tuples
    monitor = RepresentationMonitor(pairs[:2], pairs[2:], k=3, network=nn.Identity())
    engine = Engine(lambda e, b: None)
    monitor(engine)
    assert engine.state.metrics["knn_auc"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="label"):
        image_label_batch({"image": x})
    with pytest.raises(AttributeError, match="network"):
        RepresentationMonitor(pairs, pairs)(Engine(lambda e, b: None))
    with pytest.raises(ValueError, match="interval"):
        RepresentationMonitor(pairs, pairs, interval=0)


class _Pixels(nn.Module):
    """Features: a fixed random projection of the per-image standardised pixels; projections: the same, plus a
    constant offset ``collapse`` times larger (so every image lands near one point when ``collapse`` is large)."""

    def __init__(self, collapse: float) -> None:
        super().__init__()
        self.proj = nn.Linear(SIZE * SIZE, 32, bias=False)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        self.collapse = collapse

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.proj((x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        return z + self.collapse * z.norm(dim=1).mean() * torch.ones_like(z[:1])


@pytest.mark.parametrize("collapse,collapsed", [(100.0, True), (0.0, False)])
def test_geometry_of_projections_recorded_and_collapse_warned(kermany_loaders, caplog, collapse, collapsed):
    """Uniformity, mean cosine and effective rank of the projections reach the state, the log and TensorBoard; a
    collapse is warned."""
    ref, val = kermany_loaders
    network = _Pixels(collapse)
    writer = _Writer()
    engine = Engine(lambda e, b: None)
    monitor = RepresentationMonitor(ref, val, summary_writer=writer, network=network)
    monitor.attach(engine)
    with caplog.at_level("INFO", logger="monai_moco.handlers.representation_monitor"):
        engine.run([0], max_epochs=1)
    geo = {k: v for k, v in engine.state.metrics.items() if k.startswith("embedding/")}
    assert set(geo) == {"embedding/uniformity", "embedding/mean_cosine", "embedding/effective_rank"}
    assert {t for t, _, _ in writer.scalars} >= set(geo)
    assert ("collapsing" in caplog.text) is collapsed, caplog.text
    assert (geo["embedding/mean_cosine"] > 0.99) is collapsed, geo


def test_geometry_uses_training_mode_and_restores_buffers(kermany_loaders, caplog):
    """A BatchNorm head whose running statistics are not yet meaningful maps every image to one point in eval mode;
    the loss sees batch statistics, so the monitor measures in training mode (no false collapse) and leaves the
    running statistics as they were."""
    ref, val = kermany_loaders
    network = _Pixels(0.0)
    network.head = nn.BatchNorm1d(32)
    with torch.no_grad():
        network.head.running_var.fill_(1e8)
        network.head.bias.fill_(1.0)
    network.forward = lambda x: network.head(network.embed(x))  # type: ignore[method-assign]
    before = {k: v.clone() for k, v in network.state_dict().items()}
    monitor = RepresentationMonitor(ref, val, network=network)
    with caplog.at_level("WARNING", logger="monai_moco.handlers.representation_monitor"):
        monitor.compute(network)
    assert monitor.geometry["mean_cosine"] < 0.9 and "collapsing" not in caplog.text, monitor.geometry
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    network.eval()
    with torch.no_grad():
        z = network(next(iter(val))["image"])
    assert torch.nn.functional.cosine_similarity(z[:1], z).min() > 0.99  # eval mode would have looked collapsed
