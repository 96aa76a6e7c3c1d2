"""End-to-end runs of the pretraining bundles through ``python -m monai.bundle run``, on real Kermany radiographs.

Each case trains one tiny epoch (16 images, 64 px, batch 8: two steps) from the bundle's ``train.json`` + ``cpu.json``
and checks what a user relies on: the resumable checkpoint with every piece of state, the TensorBoard log, a finite
loss; plus resume through the bundle's ``resume`` id and the README's main command as written.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

MOCO_KEYS = {"network", "momentum_network", "queue", "optimizer", "trainer", "lr_scheduler", "rng", "view_transform"}
SIMCLR_KEYS = {"network", "optimizer", "trainer", "lr_scheduler", "rng", "view_transform"}


def _cpu_config(bundles, name: str) -> dict:
    """The top-level ids of ``train.json`` with ``cpu.json`` merged over them (what the tiny runs start from)."""
    train = json.loads((bundles.dir / name / "train.json").read_text())
    return {**train, **json.loads((bundles.dir / name / "cpu.json").read_text())}


def test_pretraining_bundle_tiny_run(bundles, pretrain_bundle, kermany_dir, tmp_path):
    """One tiny epoch of every pretraining bundle writes a complete checkpoint, TensorBoard scalars and a finite loss."""
    name = pretrain_bundle
    out = tmp_path / name
    cmd = bundles.command(
        [f"bundles/{name}/train.json", f"bundles/{name}/cpu.json"],
        bundles.tiny_overrides(kermany_dir, out, monitor_interval=1),
    )
    bundles.run(cmd)

    ckpt = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    config = _cpu_config(bundles, name)
    moco = config["train"]["trainer"]["_target_"].endswith("MoCoTrainer")
    expected = MOCO_KEYS if moco else SIMCLR_KEYS
    assert expected <= set(ckpt), f"{name}: checkpoint keys {sorted(ckpt)} lack {sorted(expected - set(ckpt))}"
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["trainer"]["epoch_length"] == 2, ckpt["trainer"]
    assert any(k.startswith("backbone.") for k in ckpt["network"]), sorted(ckpt["network"])[:5]
    if moco:
        queue = ckpt["queue"]
        assert int(queue["num_enqueued"]) == 16 and int(queue["ptr"]) == 16, {k: queue[k] for k in ("ptr", "num_enqueued")}
        assert torch.isfinite(queue["keys"][:16]).all()
        # the enqueued keys are L2-normalised projections
        assert torch.allclose(queue["keys"][:16].float().norm(dim=1), torch.ones(16), atol=1e-3)

    scalars = bundles.tensorboard_scalars(out / "tensorboard")
    losses = [v for _, v in scalars["train/loss"]]
    assert losses and all(math.isfinite(v) for v in losses), losses
    assert "train/acc1" in scalars and "train/lr" in scalars, sorted(scalars)
    auc = [v for _, v in scalars.get("knn_auc", [])]
    assert len(auc) == 1 and 0.0 <= auc[0] <= 1.0, f"{name}: kNN monitor AUC {auc}"
    if int(config.get("topk", 0)) > 0:  # the patch head is on: PatchHeatmapWriter wrote the fixed batch's overlays
        pngs = sorted((out / "heatmaps").glob("heatmap_e0001_*.png"))
        assert len(pngs) == 8, sorted(p.name for p in (out / "heatmaps").glob("*"))
        assert any(k.startswith("patch_head.scorer.") for k in ckpt["network"])


def test_moco_bundle_resume_continues_queue_and_epoch(bundles, kermany_dir, tmp_path):
    """Run one epoch, then resume through ``--resume`` to two: the epoch, iteration and queue pointer continue, the
    first epoch's keys stay in the queue and the LR schedule moves on."""
    out = tmp_path / "moco"
    configs = ["bundles/moco_resnet50/train.json", "bundles/moco_resnet50/cpu.json"]
    bundles.run(bundles.command(configs, bundles.tiny_overrides(kermany_dir, out, monitor=False, epochs=1)))
    first = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    assert first["trainer"]["iteration"] == 2

    resumed_out = tmp_path / "moco_resumed"
    proc = bundles.run(bundles.command(configs, bundles.tiny_overrides(
        kermany_dir, resumed_out, monitor=False, epochs=2, resume=out / "checkpoints" / "last.pt")))
    assert "Restored all variables" in proc.stdout + proc.stderr
    second = bundles.load_checkpoint(resumed_out / "checkpoints" / "last.pt")
    assert second["trainer"]["iteration"] == 4 and second["trainer"]["max_epochs"] == 2, second["trainer"]
    assert int(second["queue"]["ptr"]) == 32 and int(second["queue"]["num_enqueued"]) == 32
    torch.testing.assert_close(second["queue"]["keys"][:16], first["queue"]["keys"][:16])
    assert second["lr_scheduler"]["last_epoch"] == 2 and first["lr_scheduler"]["last_epoch"] == 1
    # the resumed run's first epoch (epoch 2) was not retrained from scratch: no epoch-1 checkpoint in its folder
    assert not (resumed_out / "checkpoints" / "checkpoint_epoch=1.pt").exists()


def test_moco_vit_readme_main_command(bundles, repo_kermany, tmp_path):
    """The README's main command as written (default dataset ``data/kermany/train``, the one-GPU recipe's other
    settings), shrunk only by output_dir / epochs / max_images / image_size / batch_size (and log_interval, so the
    two steps are logged)."""
    if not (bundles.dir / "moco_vit" / "train.json").is_file():
        pytest.fail("bundles/moco_vit/train.json is missing")
    out = tmp_path / "moco_vit"
    cmd = bundles.command(
        ["bundles/moco_vit/train.json"],
        {"output_dir": out, "epochs": 1, "max_images": 16, "image_size": 64, "batch_size": 8, "log_interval": 1},
    )
    assert cmd[-14:-12] == ["--config_file", "bundles/moco_vit/train.json"]
    bundles.run(cmd)
    ckpt = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    assert MOCO_KEYS <= set(ckpt)
    assert ckpt["trainer"]["iteration"] == 2
    losses = [v for _, v in bundles.tensorboard_scalars(out / "tensorboard")["train/loss"]]
    assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("name", ["moco_vit", "simclr_vit_topk"])
def test_vit_bundles_pass_compile_to_the_trainer(bundles, name):
    """The ViT bundles' top-level ``compile`` id (default off) is what their trainer receives."""
    config = json.loads((bundles.dir / name / "train.json").read_text())
    assert config["compile"] is False
    assert config["train"]["trainer"]["step"]["compile"] == "@compile", config["train"]["trainer"]


def test_moco_vit_bundle_runs_compiled(bundles, kermany_dir, tmp_path):
    """``--compile True`` trains through ``torch.compile`` (inductor) and still saves un-prefixed module keys."""
    out = tmp_path / "moco_vit_compiled"
    cmd = bundles.command(
        ["bundles/moco_vit/train.json", "bundles/moco_vit/cpu.json"],
        bundles.tiny_overrides(kermany_dir, out, compile=True, monitor=False),
    )
    bundles.run(cmd)
    ckpt = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["trainer"]["iteration"] == 2
    assert not [k for k in ckpt["network"] if "_orig_mod" in k], sorted(ckpt["network"])[:5]
    assert not [k for k in ckpt["momentum_network"] if "_orig_mod" in k], sorted(ckpt["momentum_network"])[:5]
    losses = [v for _, v in bundles.tensorboard_scalars(out / "tensorboard")["train/loss"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
