"""Atomic file writes: every result, exported backbone and deployment output goes through a temporary file beside its
target and ``os.replace`` (atomic on POSIX and Windows within one file system), so a crash or a failing writer never
leaves a half-written file where a reader expects a complete one.

No ``fsync`` is done: the writes are safe against a crash of the writing process, not against a power cut of the
machine (the file system may then still lose the newest data, never leave a truncated file under the target name).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FILE_MODE", "Writer", "atomic_write", "atomic_write_all", "csv_writer", "json_writer", "write_json_atomic"]

#: Permission bits of every file written here (``rw-r--r--``; ``tempfile.mkstemp`` alone would give ``0600``).
FILE_MODE = 0o644

#: A writer takes the temporary path it must write the complete file to (any return value is ignored).
Writer = Callable[[Path], Any]


def atomic_write_all(targets: Sequence[tuple[str | os.PathLike, Writer]]) -> list[Path]:
    """Write several files all-or-nothing: each to a temporary file in its own folder, then all renamed into place.

    Each writer is called with a fresh hidden temporary path ``<folder>/.<name>.<random>.tmp<suffix>`` beside its
    target (same file system, so the rename is atomic; the target's suffix is kept, for writers that pick a format by
    extension such as PIL). The parent folders are created. Only when every writer has finished are the temporaries
    renamed over their targets, in the given order (put the file that readers poll for last). On any error, including
    ``KeyboardInterrupt``, the temporaries and the targets renamed so far are removed and the error is raised again:
    a failing writer leaves the old target intact and no temporary behind.

    Args:
        targets: ``(path, writer)`` pairs; ``writer(tmp_path)`` writes the complete file to ``tmp_path``.

    Returns:
        the target paths, in order.

    Raises:
        Exception: whatever a writer or the file system raises (nothing of this call is left behind).

    Example::

        atomic_write_all([
            ("out/x_heatmap.png", lambda p: write_rgb_png(p, rgb)),
            ("out/x.json", lambda p: p.write_text(json.dumps(result))),  # last: readers poll for the JSON
        ])
    """
    paths = [Path(path) for path, _ in targets]
    temps: list[Path] = []
    done: list[Path] = []
    try:
        for path, (_, write) in zip(paths, targets, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
            os.close(fd)
            temps.append(Path(tmp))
            write(temps[-1])
            os.chmod(tmp, FILE_MODE)
        for path, tmp in zip(paths, temps, strict=True):
            os.replace(tmp, path)
            done.append(path)
    except BaseException:
        for path in temps + done:
            path.unlink(missing_ok=True)
        raise
    return done


def atomic_write(path: str | os.PathLike, write: Writer) -> Path:
    """Write one file through a temporary file beside it and ``os.replace`` (see :func:`atomic_write_all`).

    Args:
        path: the target file (its parent folders are created).
        write: ``write(tmp_path)`` writes the complete file to ``tmp_path``.

    Returns:
        ``Path(path)``.

    Raises:
        Exception: whatever ``write`` or the file system raises; the old ``path`` (if any) is then left unchanged and
            no temporary file remains.

    Example::

        atomic_write("runs/x/backbone.pth", lambda p: torch.save(state_dict, p))
    """
    return atomic_write_all([(path, write)])[0]


def json_writer(obj: Any, indent: int = 2) -> Writer:
    """A :data:`Writer` of ``obj`` as indented JSON with a final newline, for :func:`atomic_write_all` groups.

    The text is serialised now, before any file is touched, so an object that is not JSON-serialisable leaves nothing
    behind.

    Args:
        obj: JSON-serialisable object.
        indent: JSON indentation.

    Returns:
        ``write(tmp_path)`` writing the text.

    Raises:
        TypeError: when ``obj`` is not JSON-serialisable.

    Example::

        atomic_write_all([("out/results.csv", csv_writer(fields, records)), ("out/results.json", json_writer(records))])
    """
    text = json.dumps(obj, indent=indent) + "\n"
    return lambda p: Path(p).write_text(text)


def csv_writer(header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Writer:
    """A :data:`Writer` of a CSV table, for :func:`atomic_write` / :func:`atomic_write_all`.

    The text is rendered now, before any file is touched, in the ``csv`` module's default dialect (``\\r\\n`` line
    ends) and written without newline translation, byte for byte what ``csv.writer`` on ``open(path, "w",
    newline="")`` writes. A mapping row is written in ``header`` order, keys not in the header
    ignored and missing ones empty (``csv.DictWriter(f, header, extrasaction="ignore")``).

    Args:
        header: the column names (the first line).
        rows: one sequence of values (in ``header`` order) or one mapping per line.

    Returns:
        ``write(tmp_path)`` writing the table.

    Example::

        atomic_write("runs/x/predictions.csv", csv_writer(["file", "p_pneumonia"], [["a.png", 0.93], ["b.png", 0.12]]))
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(k, "") for k in header] if isinstance(row, Mapping) else row)
    text = buffer.getvalue()
    return lambda p: Path(p).write_text(text, newline="")


def write_json_atomic(obj: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    """Write ``obj`` as indented JSON with a final newline, atomically (:func:`atomic_write` of :func:`json_writer`).

    The text is serialised before any file is touched, so an object that is not JSON-serialisable leaves nothing
    behind either.

    Args:
        obj: JSON-serialisable object.
        path: destination file (its parent folders are created).
        indent: JSON indentation.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: when ``obj`` is not JSON-serialisable.

    Example::

        write_json_atomic({"auc": 0.9}, "runs/x/metrics.json")
    """
    return atomic_write(path, json_writer(obj, indent))
