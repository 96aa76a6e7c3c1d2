"""A MONAI ``CheckpointSaver`` whose writes are atomic and which never deletes a good checkpoint before the next one is
safely on disk.

Why: in MONAI 1.6.1 ``CheckpointSaver`` builds its ignite ``DiskSaver`` with ``atomic=False`` (``torch.save`` straight
into the final file), and both ignite's ``Checkpoint`` (rotation, ``n_saved``) and MONAI's ``save_final`` delete the
previous file *before* writing the new one. A run killed while writing (out of memory, pre-emption, full disk) can so
leave a truncated file and no good checkpoint. Here every file is written to a temporary file in the same folder and
moved into place with ``os.replace`` (ignite's ``DiskSaver(atomic=True)``, which in ignite 0.5.5 also grants
group/other read access, the reason MONAI gave for disabling it), and deletions of older files are deferred until the
new file has been written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class _AtomicDiskSaver(DiskSaver):
    """``DiskSaver(atomic=True)`` with MONAI's optional fixed file name and deletions deferred until after a save."""

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True, create_dir=True)
        self.filename = filename
        self._pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename if self.filename is not None else filename
        super().__call__(checkpoint=checkpoint, filename=filename, metadata=metadata)
        pending, self._pending_removals = self._pending_removals, []
        for name in pending:
            if name != filename and (self.dirname / name).exists():
                super().remove(name)

    def remove(self, filename: str) -> None:
        if self.filename is None:  # a fixed file name is replaced atomically by the next save: nothing to delete
            self._pending_removals.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` (same arguments and file names) with crash-safe writes.

    Each checkpoint is written to a temporary file beside the target and renamed over it (``os.replace``, atomic on
    POSIX and Windows), and older checkpoints (``n_saved`` rotation, the previous ``save_final`` file) are deleted only
    after the new one is complete. A process killed during ``torch.save`` leaves the previous checkpoint intact.

    Note (MONAI/ignite behaviour): ignite stops at the first ``EXCEPTION_RAISED`` handler that re-raises; MONAI's
    ``StatsHandler`` re-raises, so attach this saver (with ``save_final=True``) before a ``StatsHandler`` to get the
    exception-time checkpoint.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save, e.g. ``monai_moco.engines.checkpoint_dict(trainer, lr_scheduler)``.
        kwargs: the other ``monai.handlers.CheckpointSaver`` arguments (``save_final``, ``final_filename``,
            ``save_interval``, ``n_saved``, ``epoch_level``, ``save_key_metric``, ...).

    Example::

        from monai_moco.engines import checkpoint_dict
        from monai_moco.handlers import AtomicCheckpointSaver

        saver = AtomicCheckpointSaver("runs/ckpt", checkpoint_dict(trainer), save_interval=1, n_saved=2,
                                      save_final=True, final_filename="last.pt")
        saver.attach(trainer)
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, getattr(checkpoint.save_handler, "filename", None))
