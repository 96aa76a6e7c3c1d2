"""Per-epoch loss curve of a pretraining bundle run, from what it wrote: mean loss and wall seconds of every epoch.

Reads ``<run>/tensorboard`` (the ``train/loss`` scalar, logged every ``log_interval`` iterations; run with
``--log_interval 1`` for a mean over every step) and the epoch length from ``<run>/checkpoints/last.pt``. An epoch's
seconds are the wall time between the last logged step of the previous epoch and its own last one (the first epoch is
left out: its start is not logged). Prints one JSON object; ``--out`` also writes it.

Example::

    python scripts/loss_curve.py --run runs/simclr_3d --out docs/figures/simclr_3d_loss.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def epoch_curve(run_dir: str | Path, tag: str = "train/loss") -> dict[str, Any]:
    """Mean of ``tag`` per epoch and each epoch's wall seconds.

    Args:
        run_dir: a bundle's ``output_dir`` (holding ``tensorboard/`` and ``checkpoints/last.pt``).
        tag: the TensorBoard scalar to average.

    Returns:
        ``{"epoch_length", "epochs", "mean_loss", "logged_steps", "seconds_per_epoch"}`` (lists per epoch;
        ``seconds_per_epoch`` from epoch 2 on).

    Raises:
        FileNotFoundError: when the checkpoint or the TensorBoard events are missing.
        KeyError: when no event file holds ``tag``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Path(run_dir)
    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"loss_curve: no checkpoint at '{ckpt}' (needed for the epoch length).")
    epoch_length = int(torch.load(ckpt, map_location="cpu", weights_only=True)["trainer"]["epoch_length"])
    files = sorted((run / "tensorboard").rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"loss_curve: no TensorBoard event file under '{run / 'tensorboard'}'.")
    events: dict[int, tuple[float, float]] = {}
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            events.update({e.step: (e.value, e.wall_time) for e in acc.Scalars(tag)})
    if not events:
        raise KeyError(f"loss_curve: no '{tag}' scalar in {[str(f) for f in files]}.")
    per_epoch: dict[int, list[tuple[int, float, float]]] = {}
    for step, (value, wall) in sorted(events.items()):
        per_epoch.setdefault(math.ceil(step / epoch_length), []).append((step, value, wall))
    epochs = sorted(per_epoch)
    ends = [max(w for _, _, w in per_epoch[e]) for e in epochs]
    return {
        "epoch_length": epoch_length,
        "epochs": epochs,
        "mean_loss": [sum(v for _, v, _ in per_epoch[e]) / len(per_epoch[e]) for e in epochs],
        "logged_steps": [len(per_epoch[e]) for e in epochs],
        "seconds_per_epoch": [round(b - a, 2) for a, b in zip(ends, ends[1:], strict=False)],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Print (and optionally write) the curve of ``--run``.

    Args:
        argv: command-line arguments (see ``--help``).

    Returns:
        the curve.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the bundle run's output_dir")
    p.add_argument("--tag", default="train/loss")
    p.add_argument("--out", default="", help="also write the JSON here")
    p.add_argument("--command", default="", help="the command that made the run, stored with the curve")
    args = p.parse_args(argv)
    curve = epoch_curve(args.run, args.tag)
    if args.command:
        curve = {"command": args.command, **curve}
    text = json.dumps(curve, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return curve


if __name__ == "__main__":
    main()
