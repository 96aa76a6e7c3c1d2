"""bundles/simclr_3d through ``python -m monai.bundle run`` on the real CT volume (stent.npz): the loss falls over a
short seeded run, and a run resumed from a checkpoint continues from the saved epoch with the uninterrupted run's state.

The run is the bundle's ``train.json`` + ``cpu.json`` shrunk on the command line (a 2-block ViT-Tiny on 16^3 views,
patch 8, 32^3 regions of the volume resized to a longest side of 128); every epoch draws ``samples_per_volume`` regions
of the one volume.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from testing_helpers import load_module_from_path

CONFIGS = ["bundles/simclr_3d/train.json", "bundles/simclr_3d/cpu.json"]
EPOCHS = 6
STEPS_PER_EPOCH = 4  # samples_per_volume / batch_size
KEYS = {"network", "optimizer", "trainer", "lr_scheduler", "rng"}


def _overrides(volumes: Path, out: Path, **more) -> dict:
    base = {
        "dataset_dir": volumes, "output_dir": out, "epochs": EPOCHS, "vit_layers": 2, "image_size": 16,
        "patch_size": 8, "topk": 4, "region_size": 32, "volume_size": 128, "batch_size": 16,
        "samples_per_volume": 16 * STEPS_PER_EPOCH, "ckpt_interval": 1, "ckpt_keep": EPOCHS,
        "log_interval": 1, "num_workers": 0, "device": "cpu",
    }
    base.update(more)
    return base


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, stent_volume: Path) -> Path:
    """One seeded run of EPOCHS epochs, a checkpoint every epoch."""
    harness = load_module_from_path(Path(__file__).with_name("conftest.py"), "bundles_harness")
    out = tmp_path_factory.mktemp("simclr_3d") / "run"
    harness.run_bundle_command(harness.bundle_command(CONFIGS, _overrides(stent_volume.parent, out)))
    return out


def test_loss_falls_on_the_ct_volume(first_run: Path, bundles) -> None:
    curve = load_module_from_path(bundles.root / "scripts" / "loss_curve.py").epoch_curve(first_run)
    assert curve["epoch_length"] == STEPS_PER_EPOCH and curve["epochs"] == list(range(1, EPOCHS + 1)), curve
    assert curve["logged_steps"] == [STEPS_PER_EPOCH] * EPOCHS
    losses = curve["mean_loss"]
    assert all(math.isfinite(v) for v in losses), losses
    first, last = losses[0], sum(losses[-2:]) / 2
    assert last < first - 0.15, f"mean NT-Xent loss did not fall: first epoch {first:.3f}, last two {last:.3f} ({losses})"
    ckpt = bundles.load_checkpoint(first_run / "checkpoints" / "last.pt")
    assert KEYS <= set(ckpt), sorted(ckpt)
    assert ckpt["trainer"]["iteration"] == EPOCHS * STEPS_PER_EPOCH
    # a 3D stem and a 3D position-embedding table over the 2 x 2 x 2 grid of a 16^3 view
    assert ckpt["network"]["backbone.stem.convs.0.weight"].shape[2:] == (3, 3, 3)
    assert ckpt["network"]["backbone.pos_embed"].shape[1] == 8
    assert any(k.startswith("patch_head.scorer.") for k in ckpt["network"])


def test_resume_continues_with_the_uninterrupted_state(first_run: Path, bundles, stent_volume: Path,
                                                       tmp_path: Path) -> None:
    """Resume from the epoch EPOCHS-1 checkpoint to EPOCHS: same epoch/iteration, and network, optimizer, schedule and
    random state equal to the uninterrupted run's (the data transforms are re-seeded from torch's restored generator
    every epoch, so the resumed epoch trains on the same views)."""
    saved = first_run / "checkpoints" / f"checkpoint_epoch={EPOCHS - 1}.pt"
    out = tmp_path / "resumed"
    proc = bundles.run(bundles.command(CONFIGS, _overrides(stent_volume.parent, out, resume=saved)))
    assert "Restored all variables" in proc.stdout + proc.stderr
    # only the one remaining epoch ran in the resumed folder
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [f"checkpoint_epoch={EPOCHS}.pt", "last.pt"]
    resumed = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    straight = bundles.load_checkpoint(first_run / "checkpoints" / "last.pt")
    before = bundles.load_checkpoint(saved)
    assert resumed["trainer"]["max_epochs"] == straight["trainer"]["max_epochs"] == EPOCHS
    assert resumed["trainer"]["iteration"] == straight["trainer"]["iteration"] == EPOCHS * STEPS_PER_EPOCH
    assert resumed["lr_scheduler"]["last_epoch"] == EPOCHS * STEPS_PER_EPOCH
    for name, tensor in straight["network"].items():
        torch.testing.assert_close(resumed["network"][name], tensor, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")
    assert not torch.equal(before["network"]["backbone.pos_embed"], resumed["network"]["backbone.pos_embed"])
    for p_id, state in straight["optimizer"]["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(resumed["optimizer"]["state"][p_id][key], value, rtol=0, atol=0)
    assert torch.equal(resumed["rng"]["cpu"], straight["rng"]["cpu"])
    assert json.loads(json.dumps(resumed["lr_scheduler"], default=str)) == json.loads(
        json.dumps(straight["lr_scheduler"], default=str))
