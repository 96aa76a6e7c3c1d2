"""Ready-made logging of the contrastive engines' health statistics with MONAI's ``StatsHandler`` and
``TensorBoardStatsHandler``.

``MoCoTrainer`` / ``SimCLRTrainer`` (He et al. CVPR 2020; Chen et al. ICML 2020) leave a flat dict of floats in
``engine.state.output`` (``loss``, ``acc1``, ``pos_logit``, ``neg_logit``, ``lr``, ``grad_norm`` and, for MoCo,
``queue_fill``, ``momentum``). MONAI's stats handlers log every entry of a dict returned by ``output_transform``;
these helpers pass the right transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.handlers import StatsHandler, TensorBoardStatsHandler
from monai.utils import is_scalar

__all__ = ["CONTRASTIVE_STAT_KEYS", "contrastive_output_transform", "contrastive_stats_handlers"]

#: the statistics the contrastive engines put in ``engine.state.output`` (MoCo adds the last two).
CONTRASTIVE_STAT_KEYS = ("loss", "acc1", "pos_logit", "neg_logit", "lr", "grad_norm", "queue_fill", "momentum")


def contrastive_output_transform(
    keys: Sequence[str] | None = None, prefix: str = ""
) -> Callable[[Any], dict[str, float]]:
    """An ``output_transform`` picking the scalar statistics out of a contrastive engine's output.

    Args:
        keys: the entries to keep (default: every scalar entry).
        prefix: prepended to each name (e.g. ``"train/"`` to group TensorBoard tags).

    Returns:
        ``output -> {prefix + name: value}``.

    Example::

        StatsHandler(name="train", output_transform=contrastive_output_transform(["loss", "acc1"]))
    """

    def _transform(output: Any) -> dict[str, float]:
        if not isinstance(output, dict):
            return {}
        names = [k for k in output if k in keys] if keys is not None else list(output)
        return {f"{prefix}{k}": output[k] for k in names if is_scalar(output[k])}

    return _transform


def contrastive_stats_handlers(
    log_dir: str | None = None,
    keys: Sequence[str] | None = None,
    name: str | None = None,
    tag_prefix: str = "train/",
    iteration_interval: int = 1,
) -> list:
    """A console ``StatsHandler`` and, with ``log_dir``, a ``TensorBoardStatsHandler`` for every health statistic.

    Args:
        log_dir: TensorBoard folder; ``None`` for console logging only.
        keys: statistics to log (default: all scalars in the output, see ``CONTRASTIVE_STAT_KEYS``).
        name: logger name for ``StatsHandler`` (default: the engine's logger).
        tag_prefix: prefix of the TensorBoard tags.
        iteration_interval: log every this many iterations.

    Returns:
        the handlers, to pass as ``train_handlers`` (after any checkpoint saver, see ``AtomicCheckpointSaver``).

    Example::

        trainer = MoCoTrainer(..., train_handlers=[saver, *contrastive_stats_handlers("runs/tb")])
    """
    every: Any = True if iteration_interval <= 1 else (lambda engine, event: event % iteration_interval == 0)
    handlers: list = [
        StatsHandler(name=name, iteration_log=every, epoch_log=False, output_transform=contrastive_output_transform(keys))
    ]
    if log_dir is not None:
        handlers.append(
            TensorBoardStatsHandler(
                log_dir=log_dir,
                iteration_log=every,
                epoch_log=False,
                output_transform=contrastive_output_transform(keys, prefix=tag_prefix),
            )
        )
    return handlers
