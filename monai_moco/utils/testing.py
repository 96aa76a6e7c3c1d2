"""Run a function in several CPU processes joined by a gloo process group, for tests of distributed code.

Each rank is a fresh ``python -m monai_moco.utils.testing`` subprocess that loads the given Python file by path,
initialises ``torch.distributed`` (gloo, TCP on a free local port), calls the function and saves its return value;
the parent collects the values in rank order. Loading by path (rather than pickling the function, as
``torch.multiprocessing.spawn`` does) works for test files that are not importable packages.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["find_free_port", "run_distributed"]


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


def run_distributed(script: str | Path, function: str, world_size: int = 2, timeout: float = 120.0) -> list[Any]:
    """Run ``function(rank, world_size)`` from the file ``script`` in ``world_size`` gloo processes.

    Args:
        script: path of a Python file defining ``function`` at module level (e.g. ``__file__`` of a test).
        function: name of the function; it receives ``(rank, world_size)`` after the process group is initialised
            and returns something ``torch.save`` can store (tensors, dicts, lists).
        world_size: number of processes.
        timeout: seconds to wait for all processes.

    Returns:
        the return values, in rank order.

    Raises:
        RuntimeError: when a process fails or times out (its stderr is included).

    Example::

        def _worker(rank, world_size):
            return concat_all_gather(torch.full((2,), float(rank)))

        results = run_distributed(__file__, "_worker", world_size=2)
    """
    port = find_free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="monai_moco_dist_") as tmp:
        outs = [Path(tmp) / f"rank{r}.pt" for r in range(world_size)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "monai_moco.utils.testing", str(script), function, str(r), str(world_size),
                 str(port), str(outs[r])],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(world_size)
        ]
        errors = []
        for r, proc in enumerate(procs):
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                _, err = proc.communicate()
                errors.append(f"rank {r} timed out after {timeout} s:\n{err[-3000:]}")
                continue
            if proc.returncode != 0:
                errors.append(f"rank {r} exited with {proc.returncode}:\n{err[-3000:]}")
        if errors:
            raise RuntimeError(f"run_distributed({script}, {function}) failed:\n" + "\n".join(errors))
        return [torch.load(o, weights_only=False) for o in outs]


def _worker_main(argv: list[str]) -> None:
    script, function, rank, world_size, port, out = argv
    import torch.distributed as dist

    spec = importlib.util.spec_from_file_location("_monai_moco_dist_worker", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=int(rank), world_size=int(world_size)
    )
    try:
        result = getattr(module, function)(int(rank), int(world_size))
        torch.save(result, out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
