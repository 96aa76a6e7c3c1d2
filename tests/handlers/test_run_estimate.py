"""Tests for RunEstimate: where the run trains, the first iterations' times and the run's estimated duration."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine

from monai_moco.handlers import RunEstimate
from monai_moco.handlers.run_estimate import format_duration


@pytest.mark.parametrize(
    "seconds, text",
    [(0.04, "0.0 s"), (0.4, "0.4 s"), (9.96, "10 s"), (45, "45 s"), (125, "2 min 5 s"), (720, "12 min"), (3 * 3600 + 60 * 5, "3 h 5 min"),
     (3 * 86400 + 4 * 3600 + 59, "3 d 4 h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _run(handler: RunEstimate, step_seconds: list[float], monkeypatch, epochs: int = 2, length: int = 5) -> list[str]:
    clock = iter([0.0] + [sum(step_seconds[: i + 1]) for i in range(len(step_seconds))] + [1e9] * 100)
    monkeypatch.setattr("monai_moco.handlers.run_estimate.time.perf_counter", lambda: next(clock))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engine = Engine(lambda e, b: None)
    engine.state.device = torch.device("cpu")
    messages: list[str] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("run_estimate_test")
    logger.setLevel(logging.INFO)
    logger.addHandler(collect)
    handler.logger = logger
    handler.attach(engine)
    try:
        engine.run(range(length), max_epochs=epochs)
    finally:
        logger.removeHandler(collect)
    return messages


def test_says_no_gpu_then_times_the_first_iterations_and_points_to_the_lighter_run(monkeypatch) -> None:
    handler = RunEstimate(iterations=3, lighter="add cpu.json", long_run_seconds=100)
    messages = _run(handler, [30.0, 20.0, 22.0], monkeypatch)
    assert messages[0].startswith("no GPU found: training on the CPU; 2 epochs x 5 iterations = 10 iterations")
    assert len(messages) == 4  # the start and the first three iterations only
    assert messages[1] == "iteration 1/10: 30 s; the run takes about 5 min at this pace; for a shorter run, add cpu.json"
    # after three: 72 s so far + 7 iterations left x the median of the 2nd and 3rd (21 s, the upper of the two: 22 s)
    assert messages[3].startswith("iteration 3/10: 22 s; the run takes about 3 min 46 s at this pace")
    assert handler.estimate_seconds == pytest.approx(72 + 7 * 22)


def test_a_short_run_is_not_sent_elsewhere(monkeypatch) -> None:
    messages = _run(RunEstimate(iterations=1, lighter="add cpu.json"), [0.5], monkeypatch)
    assert len(messages) == 2 and "shorter run" not in messages[1] and "about 5.0 s" in messages[1]


def test_iterations_must_be_positive() -> None:
    with pytest.raises(ValueError, match="iterations"):
        RunEstimate(iterations=0)
