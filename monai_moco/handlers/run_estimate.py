"""Ignite handler: say at the start where a run trains and, after its first iterations, how long it will take.

A recipe sized for a GPU can start on a machine without one and look stalled: one iteration of a large batch takes a
minute on a CPU and a progress bar ticks only when it ends. This handler logs at once that no GPU was found, then for
each of the first few iterations its time and the whole run's duration at the pace so far, and, when that is long, the
lighter configuration to run instead.
"""

from __future__ import annotations

import logging
import time

import torch
from ignite.engine import Engine, Events

__all__ = ["RunEstimate", "format_duration"]


def format_duration(seconds: float) -> str:
    """A duration in the two largest units that matter, e.g. ``"3 d 4 h"``, ``"12 min"``, ``"45 s"``, ``"0.4 s"``.

    Args:
        seconds: the duration.

    Returns:
        the rounded text.

    Example::

        format_duration(3 * 86400 + 4 * 3600 + 60)  # "3 d 4 h"
    """
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    s = round(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min" if minutes >= 10 or not secs else f"{minutes} min {secs} s"
    return f"{secs} s"


class RunEstimate:
    """Log the training device at the start, then the first iterations' times with the estimated duration of the run.

    The estimate, refined at each timed iteration, is the time so far plus the iterations left times the median of the
    timed iterations after the first (which also starts data workers and builds kernels), or the first alone. When the estimate exceeds
    ``long_run_seconds`` and ``lighter`` is given, the log names it.

    Args:
        iterations: how many first iterations to log and time (``>= 1``).
        lighter: what to run instead of a long run, e.g. the CPU overlay's command line; ``None`` says nothing.
        long_run_seconds: the estimate above which ``lighter`` is named.
        logger: where to log; default the engine's logger.

    Raises:
        ValueError: for ``iterations < 1``.

    Example::

        RunEstimate(lighter="merge bundles/moco_vit/cpu.json after train.json").attach(trainer)
    """

    def __init__(
        self,
        iterations: int = 3,
        lighter: str | None = None,
        long_run_seconds: float = 3600.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if int(iterations) < 1:
            raise ValueError(f"RunEstimate: iterations must be >= 1, got {iterations}.")
        self.iterations = int(iterations)
        self.lighter = lighter
        self.long_run_seconds = float(long_run_seconds)
        self.logger = logger
        self.times: list[float] = []
        self.estimate_seconds: float | None = None
        self._last = 0.0
        self._start_iteration = 0

    def attach(self, engine: Engine) -> None:
        """Log at ``STARTED`` and at each of the first ``iterations`` ``ITERATION_COMPLETED`` events.

        Args:
            engine: the trainer (its ``state.device`` is read when it has one).
        """
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)

    def _log(self, engine: Engine) -> logging.Logger:
        return self.logger if self.logger is not None else engine.logger

    def _total(self, engine: Engine) -> int:
        return int(engine.state.epoch_length or 0) * int(engine.state.max_epochs or 0)

    def started(self, engine: Engine) -> None:
        """Say where the run trains and how many iterations it has; start the clock.

        Args:
            engine: the trainer.
        """
        device = torch.device(getattr(engine.state, "device", None) or "cpu")
        total = self._total(engine)
        where = f"training on {device}"
        if device.type == "cpu" and not torch.cuda.is_available():
            where = "no GPU found: training on the CPU"
        self._log(engine).info(
            f"{where}; {engine.state.max_epochs} epochs x {engine.state.epoch_length} iterations = {total} iterations, "
            f"timing the first {self.iterations}"
        )
        self.times, self.estimate_seconds = [], None
        self._start_iteration = int(engine.state.iteration)
        self._last = time.perf_counter()

    def iteration_completed(self, engine: Engine) -> None:
        """Log the iteration's time and the estimated duration of the run (the first ``iterations`` only).

        Args:
            engine: the trainer.
        """
        if len(self.times) >= self.iterations:
            return
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now
        total = self._total(engine)
        paced = sorted(self.times[1:] or self.times)
        left = max(total - int(engine.state.iteration), 0)
        self.estimate_seconds = sum(self.times) + paced[len(paced) // 2] * left
        message = (
            f"iteration {engine.state.iteration}/{total}: {format_duration(self.times[-1])}; the run takes about "
            f"{format_duration(self.estimate_seconds)} at this pace"
        )
        if self.lighter and self.estimate_seconds > self.long_run_seconds:
            message += f"; for a shorter run, {self.lighter}"
        self._log(engine).info(message)
