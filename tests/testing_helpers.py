"""Test helpers: run a function in several CPU processes joined by a gloo process group (for distributed code), import
a script by path, and write a checkpoint whose pickle would run code (for the safe-loading tests).

``tests/`` is on ``sys.path`` (``pythonpath`` in ``pyproject.toml``), so tests write ``from testing_helpers import ...``.

Each rank (forked from the caller, or a fresh subprocess that loads the function's file by path) initialises
``torch.distributed`` (gloo, TCP on a free local port), calls the function and saves its return value; the parent
collects the values in rank order. Neither way pickles the function (as ``torch.multiprocessing.spawn`` would), so it
works for functions in test files that are not importable packages.
"""

from __future__ import annotations

import importlib.util
import inspect
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from monai.utils import look_up_option

__all__ = [
    "CodeRunningPayload",
    "find_free_port",
    "load_module_from_path",
    "run_distributed",
    "save_code_running_checkpoint",
]


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    Returns:
        the port number.

    Example::

        port = find_free_port()
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_rank(fn: Callable[[int, int], Any], rank: int, world_size: int, port: int, out: str) -> None:
    """Body of one forked rank: join the gloo group, run ``fn``, save its result or the traceback."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
        )
        try:
            torch.save(fn(rank, world_size), out)
        finally:
            dist.destroy_process_group()
    except BaseException:
        Path(out + ".err").write_text(traceback.format_exc())
        raise


def run_distributed(
    fn: Callable[[int, int], Any], world_size: int = 2, timeout: float = 120.0, start_method: str | None = None
) -> list[Any]:
    """Run ``fn(rank, world_size)`` in ``world_size`` processes joined by a gloo process group.

    With ``start_method="fork"`` (the default where available) the ranks are forked from the calling process, so
    nothing is imported again and a 2-rank test costs well under a second. With ``"subprocess"`` each rank is a fresh
    ``python tests/testing_helpers.py`` process that loads the file defining ``fn`` by path (no pickling, so it works
    for test files that are not importable packages); it costs a full ``import torch, monai`` per rank.

    Args:
        fn: a module-level function taking ``(rank, world_size)``, called after the process group is initialised; it
            returns something ``torch.save`` can store (tensors, dicts, lists).
        world_size: number of processes.
        timeout: seconds to wait for all processes.
        start_method: ``"fork"`` or ``"subprocess"``; ``None`` picks fork when the platform has it.

    Returns:
        the return values, in rank order.

    Raises:
        RuntimeError: when a rank fails or times out (its traceback / stderr is included).

    Example::

        def _worker(rank, world_size):
            return concat_all_gather(torch.full((2,), float(rank)))

        results = run_distributed(_worker, world_size=2)
    """
    if start_method is None:
        start_method = "fork" if "fork" in mp.get_all_start_methods() else "subprocess"
    start_method = look_up_option(start_method, ("fork", "subprocess"))
    port = find_free_port()
    with tempfile.TemporaryDirectory(prefix="monai_moco_dist_") as tmp:
        outs = [str(Path(tmp) / f"rank{r}.pt") for r in range(world_size)]
        errors = []
        if start_method == "fork":
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=_run_rank, args=(fn, r, world_size, port, outs[r])) for r in range(world_size)]
            for proc in procs:
                proc.start()
            deadline = time.monotonic() + timeout
            for proc in procs:
                proc.join(max(deadline - time.monotonic(), 0.0))
            for r, proc in enumerate(procs):
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                    errors.append(f"rank {r} timed out after {timeout} s")
                elif proc.exitcode != 0:
                    err = Path(outs[r] + ".err")
                    errors.append(f"rank {r} exited with {proc.exitcode}:\n{err.read_text() if err.exists() else ''}")
        else:
            script = inspect.getsourcefile(fn)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            procs_sp = [
                subprocess.Popen(
                    [sys.executable, __file__, str(script), fn.__name__, str(r),
                     str(world_size), str(port), outs[r]],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for r in range(world_size)
            ]
            for r, sp in enumerate(procs_sp):
                try:
                    _, err = sp.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    for other in procs_sp:
                        other.kill()
                    _, err = sp.communicate()
                    errors.append(f"rank {r} timed out after {timeout} s:\n{err[-3000:]}")
                    continue
                if sp.returncode != 0:
                    errors.append(f"rank {r} exited with {sp.returncode}:\n{err[-3000:]}")
        if errors:
            raise RuntimeError(f"run_distributed({fn.__name__}, world_size={world_size}) failed:\n" + "\n".join(errors))
        # weights_only: the ranks return tensors and plain containers; nothing in a result file can run code
        return [torch.load(o, weights_only=True) for o in outs]


def load_module_from_path(path: str | os.PathLike, name: str | None = None) -> ModuleType:
    """Import a Python file that is not part of an importable package (a script, a test file) as a module.

    Args:
        path: the ``.py`` file.
        name: module name to give it; default the file's stem.

    Returns:
        the executed module.

    Raises:
        ImportError: when the file cannot be loaded as a module.

    Example::

        make_splits = load_module_from_path("scripts/make_splits.py")
        make_splits.main(["--help"])
    """
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {str(path)!r} as a Python module (expected a .py file).")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _worker_main(argv: list[str]) -> None:
    script, function, rank, world_size, port, out = argv
    module = load_module_from_path(script, "_monai_moco_dist_worker")
    _run_rank(getattr(module, function), int(rank), int(world_size), int(port), out)


class CodeRunningPayload:
    """Unpickling this object calls ``open(marker, "w")``: it stands for a checkpoint that runs code when loaded.

    Args:
        marker: file that appears if the pickle's code ever runs.
    """

    def __init__(self, marker: str | os.PathLike) -> None:
        self.marker = os.fspath(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def save_code_running_checkpoint(
    path: str | os.PathLike, marker: str | os.PathLike, state: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint whose pickle would create ``marker`` when loaded with ``torch.load(weights_only=False)``.

    For tests that every loader refuses such a file (``weights_only=True``) and the marker never appears.

    Args:
        path: file to write.
        marker: file the payload would create.
        state: tensors saved beside the payload (default a MoCo-like ``{"state_dict": {...}}``).

    Returns:
        ``path``.

    Example::

        save_code_running_checkpoint(tmp_path / "evil.pth", tmp_path / "pwned")
        with pytest.raises(UnsafeCheckpointError):
            load_checkpoint_file(tmp_path / "evil.pth")
        assert not (tmp_path / "pwned").exists()
    """
    obj = dict(state) if state is not None else {"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(1)}}
    obj["payload"] = CodeRunningPayload(marker)
    torch.save(obj, path)
    return Path(path)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
