"""AtomicCheckpointSaver: a write killed half-way leaves the previous checkpoint intact (MONAI's saver does not)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from monai_moco.handlers import AtomicCheckpointSaver


def _engine_and_model() -> tuple[Engine, torch.nn.Linear]:
    model = torch.nn.Linear(3, 2)

    def step(engine, batch):
        with torch.no_grad():
            model.weight.add_(1.0)
        return 0.0

    return Engine(step), model


def _failing_save():
    """A torch.save that writes half a file and then dies, like a process killed (or a full disk) during the write."""

    def save(obj, f, *args, **kwargs):
        data = b"PK\x03\x04 partial checkpoint"
        if hasattr(f, "write"):
            f.write(data)
            f.flush()
        else:
            Path(f).write_bytes(data)
        raise OSError("simulated crash during torch.save")

    return save


@pytest.mark.parametrize(
    "kwargs, first, second",
    [
        ({"save_interval": 1, "n_saved": 1}, "model_epoch=1.pt", "model_epoch=2.pt"),
        ({"save_final": True, "final_filename": "last.pt", "save_interval": 0}, "last.pt", "last.pt"),
    ],
)
def test_killed_write_keeps_previous_checkpoint(kwargs, first, second, tmp_path, monkeypatch):
    engine, model = _engine_and_model()
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": model}, **kwargs)
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    good = torch.load(tmp_path / first, weights_only=True)
    torch.testing.assert_close(good["weight"], model.weight.detach())

    monkeypatch.setattr(torch, "save", _failing_save())
    with pytest.raises(OSError, match="simulated crash"):
        engine.run([0], max_epochs=2)
    monkeypatch.undo()

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [first]  # previous file kept, no partial target, no temporary left over
    torch.testing.assert_close(torch.load(tmp_path / first, weights_only=True)["weight"], good["weight"])


def test_monai_saver_loses_the_previous_checkpoint(tmp_path, monkeypatch):
    """Why AtomicCheckpointSaver exists: MONAI 1.6.1 deletes the old file first and writes in place."""
    engine, model = _engine_and_model()
    CheckpointSaver(str(tmp_path), {"model": model}, save_interval=1, n_saved=1).attach(engine)
    engine.run([0], max_epochs=1)
    monkeypatch.setattr(torch, "save", _failing_save())
    with pytest.raises(OSError):
        engine.run([0], max_epochs=2)
    monkeypatch.undo()
    assert not (tmp_path / "model_epoch=1.pt").exists()
    with pytest.raises(RuntimeError):  # the half-written file is all that is left
        torch.load(tmp_path / "model_epoch=2.pt", weights_only=True)


def test_rotation_keeps_n_saved_and_readable_files(tmp_path):
    engine, model = _engine_and_model()
    AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_interval=1, n_saved=2).attach(engine)
    engine.run([0, 0], max_epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=3.pt", "model_epoch=4.pt"]
    weight = torch.load(tmp_path / "model_epoch=4.pt", weights_only=True)["weight"]
    torch.testing.assert_close(weight, model.weight.detach())
    assert (tmp_path / "model_epoch=4.pt").stat().st_mode & 0o044  # group/other may read (MONAI's concern)


def test_iteration_level_and_final_after_exception(tmp_path):
    engine, model = _engine_and_model()
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_interval=2, epoch_level=False, n_saved=1,
                                  save_final=True)
    saver.attach(engine)

    @engine.on(Events.ITERATION_COMPLETED(once=5))
    def _boom(e):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        engine.run([0] * 10, max_epochs=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model_final_iteration=5.pt", "model_iteration=4.pt"]
