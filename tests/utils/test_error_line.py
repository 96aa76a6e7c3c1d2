"""Tests for monai_moco.utils.error_line: which exception a failed bundle run names, and the excepthook that names it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

from monai_moco.transforms import LoadXRayd, XRayReadError
from monai_moco.utils.error_line import (
    exception_chain,
    format_error_line,
    install_error_line_hook,
    is_wrapper,
    root_cause,
    uninstall_error_line_hook,
)

# a DICOM with a malformed IS value: pydicom raises a bare ValueError, LoadXRay an XRayReadError naming the file
BAD_DICOM = Path(pydicom.__file__).parent / "data" / "test_files" / "badVR.dcm"
MISSING = "/nonexistent/monai_moco_dataset"


def caught(fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises (the test fails when it returns)."""
    with pytest.raises(BaseException) as info:
        fn()
    return info.value


def config_expression() -> object:
    """MONAI's "Failed to evaluate ConfigExpression" around our FileNotFoundError."""
    parser = ConfigParser({"imports": ["$from monai_moco.data import unlabeled_datalist"],
                           "x": f"$unlabeled_datalist('{MISSING}')"})
    return parser.get_parsed_content("x")


def config_component() -> object:
    """MONAI's "Failed to instantiate component" around our FileNotFoundError."""
    return ConfigParser({"x": {"_target_": "monai_moco.data.unlabeled_datalist", "root": MISSING}}).get_parsed_content("x")


def transform_on_bad_dicom() -> object:
    """MONAI's "applying transform" around our XRayReadError, itself raised from pydicom's ValueError."""
    return Compose([LoadXRayd(keys="image")])({"image": str(BAD_DICOM)})


def missing_reference() -> object:
    """MONAI's own ValueError, raised from a ValueError of its option look-up: a message, not a wrapper."""
    return ConfigParser({"x": "@no_such_id"}).get_parsed_content("x")


def plain_error() -> object:
    """An exception with no chain."""
    raise KeyError("label")


@pytest.mark.parametrize(
    "fn,chain_types,expected_type,expected_text",
    [
        (config_expression, ["RuntimeError", "FileNotFoundError"], FileNotFoundError, MISSING),
        (config_component, ["RuntimeError", "FileNotFoundError"], FileNotFoundError, MISSING),
        (transform_on_bad_dicom, ["RuntimeError", "XRayReadError", "ValueError"], XRayReadError, "badVR.dcm"),
        (missing_reference, ["ValueError", "ValueError"], ValueError, "@no_such_id"),
        (plain_error, ["KeyError"], KeyError, "label"),
    ],
    ids=["config-expression", "config-component", "transform-over-reader", "monai-message", "no-chain"],
)
def test_root_cause_skips_monai_wrappers_only(fn, chain_types, expected_type, expected_text):
    err = caught(fn)
    assert [type(e).__name__ for e in exception_chain(err)] == chain_types
    cause = root_cause(err)
    assert type(cause) is expected_type
    assert expected_text in str(cause)
    assert not is_wrapper(cause)
    line = format_error_line(err)
    assert line.startswith(f"ERROR: {expected_type.__name__}: ") and expected_text in line and "\n" not in line


def test_root_cause_with_no_wrapper_package_is_the_outermost():
    err = caught(config_expression)
    assert root_cause(err, wrappers=()) is err
    assert format_error_line(err, wrappers=()).startswith("ERROR: RuntimeError: Failed to evaluate")


def raise_from(suppress: bool | None) -> None:
    """Raise RuntimeError while handling an OSError: ``from err`` (True), ``from None`` (False) or implicitly (None)."""
    try:
        raise OSError("inner")
    except OSError as err:
        if suppress is None:
            raise RuntimeError("outer")  # noqa: B904 - the implicit __context__ is what is tested
        raise RuntimeError("outer") from (err if suppress else None)


@pytest.mark.parametrize("suppress,expected", [(True, ["outer", "inner"]), (None, ["outer", "inner"]), (False, ["outer"])],
                         ids=["cause", "context", "from-none"])
def test_exception_chain_follows_what_the_traceback_shows(suppress, expected):
    assert [str(e) for e in exception_chain(caught(lambda: raise_from(suppress)))] == expected


def test_exception_chain_stops_at_a_cycle():
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert exception_chain(a) == [a, b]


def test_a_dataloader_worker_error_names_the_file():
    """PyTorch re-raises a worker's error as a new RuntimeError holding the worker's chain as text."""
    loader = DataLoader(Dataset([{"image": str(BAD_DICOM)}], transform=LoadXRayd(keys="image")), num_workers=1)
    err = caught(lambda: next(iter(loader)))
    assert "DataLoader worker" in str(err) and "applying transform" in str(err)
    line = format_error_line(err)
    assert line.startswith("ERROR: XRayReadError: cannot read X-ray") and "badVR.dcm" in line and "\n" not in line


@pytest.mark.parametrize(
    "message,expected",
    [("no labels.csv\n  in /data\n", "ERROR: ValueError: no labels.csv in /data"), ("", "ERROR: ValueError")],
    ids=["multi-line", "empty"],
)
def test_format_error_line_is_one_line(message, expected):
    assert format_error_line(ValueError(message)) == expected


class RecordingHook:
    """An excepthook that records the exceptions it was given."""

    def __init__(self) -> None:
        self.seen: list[BaseException] = []

    def __call__(self, exc_type, exc, tb) -> None:
        self.seen.append(exc)
        print("previous hook output", file=sys.stderr)


@pytest.mark.parametrize(
    "make_exc,expected_last_line",
    [
        (lambda: caught(config_expression), f"ERROR: FileNotFoundError: image folder '{MISSING}' does not exist"),
        (KeyboardInterrupt, "previous hook output"),
    ],
    ids=["exception", "keyboard-interrupt"],
)
def test_hook_chains_the_previous_one_and_prints_last(monkeypatch, capsys, make_exc, expected_last_line):
    exc = make_exc()
    previous = RecordingHook()
    monkeypatch.setattr(sys, "excepthook", previous)
    assert install_error_line_hook() is True
    assert install_error_line_hook() is False  # idempotent: still one hook
    sys.excepthook(type(exc), exc, exc.__traceback__)
    assert previous.seen == [exc]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == "previous hook output" and lines[-1].startswith(expected_last_line)
    assert len(lines) == (2 if isinstance(exc, Exception) else 1)
    assert uninstall_error_line_hook() is True
    assert sys.excepthook is previous
    assert uninstall_error_line_hook() is False


@pytest.mark.parametrize("module", ["monai_moco", "monai_moco.utils", "monai_moco.utils.bundle_error_line"])
def test_importing_outside_a_bundle_run_leaves_the_excepthook_alone(module):
    code = f"import sys; before = sys.excepthook; import {module}; assert sys.excepthook is before, sys.excepthook"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
