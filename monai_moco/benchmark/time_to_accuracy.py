"""Time-to-accuracy of MoCo pretraining: training wall time until the kNN AUC of a fixed validation subset reaches a
target, for the ``moco_resnet50`` bundle's own components against a loop built from lightly's public parts, in one
process; ``scripts/bench_time_to_accuracy.py`` is its command line (``main``).

A throughput benchmark (``monai_moco.benchmark.pretrain``) says how fast a step is; this one says how soon a recipe
gives useful features, which also counts what a step learns (bf16 autocast, the batched augmentation, shuffled BN).

* **ours**: built from the bundle config (default ``bundles/moco_resnet50/train.json`` + ``cpu_study.json``) with
  ``monai.bundle.ConfigParser``, so the recipe is exactly the bundle's: its decode-once cached dataset and data loader,
  ``MoCoTrainer`` with ``BatchedTwoView`` on the training device and the fast path (``amp``, channels-last, fused
  SGD), the batch-normalised ``MoCoV2ProjectionHead``, ``InfoNCELoss``, the queue, the key-encoder momentum and the
  cosine learning-rate schedule (stepped per epoch, as the bundle's ``LrScheduleHandler``). The bundle's
  checkpoint, TensorBoard and monitor handlers are not attached: they are not training.
* **lightly**: the loop of lightly's ``examples/pytorch/moco.py`` from its public parts, with the bundle's recipe read
  from the same parsed config: ``MoCoProjectionHead(batch_norm=True)`` (the same layers as ours),
  ``NTXentLoss(memory_bank_size=(queue_size, embedding_dim))``, ``update_momentum`` with the bundle's constant
  momentum, ``torch.optim.SGD`` with the bundle optimizer's lr / momentum / weight decay and the same cosine
  schedule, in fp32; views from ``lightly.transforms.MoCoV2Transform`` with the bundle's image size and crop scale
  (``min_scale = crop_scale[0]``; no normalisation, so training and scoring both see images in [0, 1]), run in a
  plain ``torch.utils.data.DataLoader`` (the bundle's batch size and worker count, shuffled, ``drop_last``) over the
  same decoded images (grayscale PIL images made once from ours' cache). It starts from ours' initial weights
  (backbone and head copied before training, in the default contiguous memory format).

Both are scored by the same code after every epoch: :class:`~monai_moco.handlers.RepresentationMonitor`'s
``compute`` (weighted kNN, ``k`` = 20, on backbone features) over the bundle's own monitor subset
(``monitor_data``: ``monai_moco.data.probe_datalists(monitor_dir, num_images=monitor_images, seed=seed,
group_pattern=monitor_group_pattern)``, a reference half and a validation half), decoded once. The benchmark sets
``monitor_group_pattern`` to Kermany's patient ids in file names (:data:`KERMANY_PATIENT_PATTERN`, or
``--monitor_group_pattern``), so no patient is on both sides: split per image, a patient's other radiograph is a
near-duplicate neighbour and even an untrained network scores a high kNN AUC. The runners alternate epoch by epoch in one process (which goes
first alternates too), so a busy shared machine slows both alike; only training is timed (scoring is not). A runner
stops when its kNN AUC reaches ``--target`` (checked from epoch 1), after ``--max_epochs`` (default: the bundle's
``epochs``, which the cosine schedule spans) or once its training time passes ``--max_seconds``; the other then
continues alone.

JSON lines on stdout, with ``kind``:

* ``epoch``: one per runner per epoch (epoch 0 is the shared initial weights, not timed): ``runner``, ``epoch``,
  ``train_seconds`` (cumulative training time), ``epoch_seconds``, ``knn_auc``, ``steps`` (optimizer steps of the
  epoch), ``loss`` (their mean), ``lr`` (of the epoch), ``score_seconds`` and the validation projections'
  geometry (``uniformity``, ``mean_cosine``, ``effective_rank``);
* ``summary``: ``target``, per runner (``runners``) ``time_to_target`` (the cumulative training time at the first
  epoch whose kNN AUC reached the target, or null), ``epochs_to_target``, ``initial_knn_auc`` (untrained; a target
  at or below it says little), ``best_knn_auc`` (over the trained epochs), ``epochs``,
  ``train_seconds``, ``stopped`` (``"target"``, ``"max_epochs"`` or ``"max_seconds"``) and ``dtype``; ``ratio``
  (lightly's time-to-target / ours, null unless both reached it); the recipe; the torch and host facts
  (``machine_info``, ``cpu_flags``: ``avx512_bf16``, ``amx_bf16``, ``amx_tile``; ``amp``);
  ``monitor_group_pattern``; ``target_at_or_below_initial`` (also a warning on stderr) when the untrained network
  already scores the target; ``equal_epoch_time_ratio`` (lightly's training time / ours after ``equal_epochs``
  epochs of each), the speed comparison that stays defined when the target does not decide.

A target only decides when a runner stops, so one run with an unreachable target (``--target 1.01``) gives the
time-to-target of every lower target: ``--from_lines`` re-summarises saved lines at ``--target`` without training
(:func:`summary_from_lines`).

Example::

    .venv/bin/python scripts/bench_time_to_accuracy.py --target 0.93 > runs/bench_tta.jsonl
    .venv/bin/python scripts/bench_time_to_accuracy.py --from_lines runs/bench_tta.jsonl --target 0.97
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.handlers import LrScheduleHandler
from PIL import Image
from torch import nn

from monai_moco.benchmark.augment import lightly_available
from monai_moco.benchmark.timing import machine_info, print_json_line
from monai_moco.handlers import RepresentationMonitor

__all__ = [
    "KERMANY_PATIENT_PATTERN",
    "BUNDLE_CONFIGS",
    "LightlyMoCo",
    "LightlyRunner",
    "OursRunner",
    "Recipe",
    "cpu_flags",
    "load_bundle",
    "main",
    "run_interleaved",
    "summarise",
    "summary_from_lines",
]

#: the bundle configs of the CPU study recipe, relative to the repository root
BUNDLE_CONFIGS = ("bundles/moco_resnet50/train.json", "bundles/moco_resnet50/cpu_study.json")
#: the /proc/cpuinfo flags that decide whether bf16 autocast pays on this CPU
CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
#: Kermany's patient id in a file name: ``IM-0115`` / ``NORMAL2-IM-1427`` (normal), ``person1`` (pneumonia)
KERMANY_PATIENT_PATTERN = r"((?:NORMAL2-)?IM-\d+|person\d+)"
RUNNERS = ("ours", "lightly")


def cpu_flags(names: Sequence[str] = CPU_FLAGS) -> dict[str, bool | None]:
    """Which of the CPU feature flags ``names`` ``/proc/cpuinfo`` lists.

    Args:
        names: flag names as ``/proc/cpuinfo`` spells them.

    Returns:
        name -> present; every value ``None`` where ``/proc/cpuinfo`` cannot be read (not Linux).

    Example::

        cpu_flags()  # {"avx512_bf16": True, "amx_bf16": True, "amx_tile": True}
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return dict.fromkeys(names)
    return {name: name in flags for name in names}


@dataclass(frozen=True)
class Recipe:
    """The pretraining recipe both runners follow, read from the parsed bundle config.

    Args:
        backbone: backbone name (``monai_moco.networks.nets.build_backbone``).
        image_size: training image side in pixels.
        batch_size: images per step.
        epochs: epochs the cosine schedule spans.
        lr: SGD learning rate.
        sgd_momentum: SGD momentum.
        weight_decay: SGD weight decay.
        queue_size: negatives kept (MoCo queue / lightly memory bank).
        temperature: InfoNCE temperature.
        key_momentum: key-encoder momentum (constant).
        embedding_dim: projection output size.
        crop_scale: random-resized-crop area range.
        num_workers: data-loader worker processes.
        seed: the bundle's seed.

    Example::

        recipe = Recipe.from_parser(load_bundle(BUNDLE_CONFIGS, {}))
    """

    backbone: str
    image_size: int
    batch_size: int
    epochs: int
    lr: float
    sgd_momentum: float
    weight_decay: float
    queue_size: int
    temperature: float
    key_momentum: float
    embedding_dim: int
    crop_scale: tuple[float, float]
    num_workers: int
    seed: int

    @classmethod
    def from_parser(cls, parser: ConfigParser) -> Recipe:
        """The recipe of a parsed pretraining bundle (MoCo: ``momentum_end`` must be null).

        Args:
            parser: the bundle's ``ConfigParser``.

        Returns:
            The recipe.

        Raises:
            ValueError: when the bundle ramps the key momentum (``momentum_end``), which the lightly loop does not.

        Example::

            Recipe.from_parser(parser).batch_size  # 128 with cpu_study.json
        """
        if parser.get_parsed_content("momentum_end") is not None:
            raise ValueError("time_to_accuracy: the bundle ramps the key momentum (momentum_end); set it to null.")
        sgd = parser.get_parsed_content("optimizer").defaults  # the optimizer ours trains with (instantiated once)
        scale = parser.get_parsed_content("crop_scale")
        return cls(
            backbone=str(parser.get_parsed_content("backbone")),
            image_size=int(parser.get_parsed_content("image_size")),
            batch_size=int(parser.get_parsed_content("batch_size")),
            epochs=int(parser.get_parsed_content("epochs")),
            lr=float(sgd["lr"]),
            sgd_momentum=float(sgd.get("momentum", 0.0)),
            weight_decay=float(sgd.get("weight_decay", 0.0)),
            queue_size=int(parser.get_parsed_content("queue_size")),
            temperature=float(parser.get_parsed_content("temperature")),
            key_momentum=float(parser.get_parsed_content("momentum")),
            embedding_dim=int(parser.get_parsed_content("embedding_dim")),
            crop_scale=(float(scale[0]), float(scale[1])),
            num_workers=int(parser.get_parsed_content("num_workers")),
            seed=int(parser.get_parsed_content("seed")),
        )


def load_bundle(config_files: Sequence[str | Path], overrides: dict[str, Any]) -> ConfigParser:
    """Parse a pretraining bundle's configs (later files override earlier ones, as ``--config_file "[...]"`` does)
    with ``overrides`` applied and the kNN monitor's data switched on.

    Args:
        config_files: e.g. :data:`BUNDLE_CONFIGS`.
        overrides: config id -> value (e.g. ``{"output_dir": tmp, "max_images": 64}``).

    Returns:
        The parser; nothing is instantiated yet.

    Example::

        parser = load_bundle(BUNDLE_CONFIGS, {"output_dir": "runs/tta"})
    """
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    for key, value in {"monitor": True, "progress": False, **overrides}.items():
        parser[key] = value
    return parser


class OursRunner:
    """The bundle's own MoCo training, one epoch per :meth:`train_epoch`.

    ``train#trainer`` with the bundle's cosine schedule (``LrScheduleHandler``, epoch level) and a handler that pauses
    the engine after every epoch (``engine.terminate()``; the next ``run()`` continues from the same state).

    Args:
        parser: the parsed bundle (:func:`load_bundle`); its ``initialize`` has run.

    Example::

        ours = OursRunner(parser)
        losses = ours.train_epoch()
    """

    name = "ours"

    def __init__(self, parser: ConfigParser) -> None:
        self.trainer = parser.get_parsed_content("train#trainer")
        self.network: nn.Module = parser.get_parsed_content("network_def")  # the query encoder the monitor probes
        self.optimizer: torch.optim.Optimizer = parser.get_parsed_content("optimizer")
        LrScheduleHandler(parser.get_parsed_content("lr_scheduler"), print_lr=False, epoch_level=True).attach(
            self.trainer
        )
        self._losses: list[float] = []
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._keep_loss)
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: engine.terminate())
        self.dtype = str(self.trainer.amp_dtype).removeprefix("torch.") if self.trainer.amp else "float32"

    def _keep_loss(self, engine: Any) -> None:
        self._losses.append(float(engine.state.output["loss"]))

    def train_epoch(self) -> list[float]:
        """Train one epoch.

        Returns:
            The loss of each of its steps.
        """
        self._losses = []
        self.trainer.run()
        return self._losses


class LightlyMoCo(nn.Module):
    """lightly's MoCo model (its ``examples/pytorch/moco.py``): backbone and projection head, with momentum copies.

    ``forward`` is the query projection and ``embed`` the backbone features, as
    :class:`~monai_moco.networks.nets.ContrastiveEncoder`, so the same monitor code probes both.

    Args:
        backbone: the backbone (``B x C x H x W -> B x F``).
        projection_head: the projection head (``B x F -> B x D``).

    Example::

        model = LightlyMoCo(backbone, MoCoProjectionHead(512, 512, 128, batch_norm=True))
        key = model.forward_momentum(x)
    """

    def __init__(self, backbone: nn.Module, projection_head: nn.Module) -> None:
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.backbone = backbone
        self.projection_head = projection_head
        self.backbone_momentum = copy.deepcopy(backbone)
        self.projection_head_momentum = copy.deepcopy(projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Returns: the backbone features ``B x F`` of ``x``."""
        return self.backbone(x).flatten(start_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns: the query projections ``B x D`` of ``x``."""
        return self.projection_head(self.embed(x))

    def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
        """Returns: the key projections ``B x D`` of ``x`` by the momentum encoder, detached."""
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()


class _PilTwoViews(torch.utils.data.Dataset):
    """Two views of each grayscale PIL image by a lightly transform (``[view0, view1]``, each ``1 x S x S``)."""

    def __init__(self, images: Sequence[Image.Image], transform: Callable[[Image.Image], Any]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        view0, view1 = self.transform(self.images[index])
        return view0, view1


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """``N x 1 x H x W`` images in [0, 1] as 8-bit grayscale PIL images (what lightly's transforms take).

    Args:
        images: the decoded images.

    Returns:
        One ``"L"`` image each.

    Example::

        pils = to_pil_images(torch.rand(4, 1, 64, 64))
    """
    arrays = images[:, 0].clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return [Image.fromarray(a, mode="L") for a in arrays]


class LightlyRunner:
    """A MoCo loop from lightly's public parts with the bundle's recipe, one epoch per :meth:`train_epoch`.

    Args:
        images: the decoded training images ``N x 1 x H x W`` in [0, 1] (ours' cache).
        initial: ours' network before training (``ContrastiveEncoder``: ``backbone`` and ``projection``); its weights
            are copied.
        recipe: the bundle's recipe.

    Raises:
        ImportError: when lightly (the ``bench`` extra) is not installed.

    Example::

        lightly_runner = LightlyRunner(images, ours.network, Recipe.from_parser(parser))
        losses = lightly_runner.train_epoch()
    """

    name = "lightly"
    dtype = "float32"

    def __init__(self, images: torch.Tensor, initial: nn.Module, recipe: Recipe) -> None:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.transforms import MoCoV2Transform

        backbone = copy.deepcopy(initial.backbone).to(memory_format=torch.contiguous_format)
        features = int(initial.backbone.out_features)
        head = MoCoProjectionHead(features, features, recipe.embedding_dim, batch_norm=True)
        head.load_state_dict(initial.projection.state_dict())  # the same layers: starts where ours starts
        self.network = LightlyMoCo(backbone, head)
        self.recipe = recipe
        self.criterion = NTXentLoss(
            temperature=recipe.temperature, memory_bank_size=(recipe.queue_size, recipe.embedding_dim)
        )
        self.optimizer = torch.optim.SGD(
            self.network.parameters(), lr=recipe.lr, momentum=recipe.sgd_momentum, weight_decay=recipe.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=recipe.epochs)
        transform = MoCoV2Transform(input_size=recipe.image_size, min_scale=recipe.crop_scale[0], normalize=None)
        self.loader = torch.utils.data.DataLoader(
            _PilTwoViews(to_pil_images(images), transform),
            batch_size=recipe.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=recipe.num_workers,
            persistent_workers=recipe.num_workers > 0,
            generator=torch.Generator().manual_seed(recipe.seed),
        )

    def train_epoch(self) -> list[float]:
        """Train one epoch (lightly's example loop), then step the cosine schedule.

        Returns:
            The loss of each of its steps.
        """
        from lightly.models.utils import update_momentum

        model, m = self.network, self.recipe.key_momentum
        model.train()
        losses = []
        for x_query, x_key in self.loader:
            update_momentum(model.backbone, model.backbone_momentum, m=m)
            update_momentum(model.projection_head, model.projection_head_momentum, m=m)
            query = model(x_query)
            key = model.forward_momentum(x_key)
            loss = self.criterion(query, key)
            losses.append(loss.item())
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.scheduler.step()
        return losses


def decoded_images(dataset: Sequence[dict]) -> torch.Tensor:
    """The cached, decoded images of ours' training dataset as one ``N x 1 x H x W`` float tensor.

    Args:
        dataset: ``train#dataset`` (items ``{"image": 1 x H x W}``).

    Returns:
        The stacked images (plain tensor).

    Example::

        images = decoded_images(parser.get_parsed_content("train#dataset"))
    """
    return torch.stack([torch.as_tensor(dataset[i]["image"]).float() for i in range(len(dataset))])


def run_interleaved(
    runners: Sequence[Any],
    score: Callable[[nn.Module], tuple[float, dict[str, float]]],
    target: float,
    max_epochs: int,
    max_seconds: float,
    emit: Callable[[dict[str, Any]], None] = print_json_line,
) -> dict[str, dict[str, Any]]:
    """Train the runners epoch by epoch in alternating order, score each after every epoch, stop each at the target.

    Args:
        runners: objects with ``name``, ``network`` and ``train_epoch() -> losses of its steps`` (optionally
            ``optimizer``, whose learning rate is reported, and ``dtype``).
        score: ``score(network) -> (knn_auc, geometry)``; not timed.
        target: the kNN AUC that ends a runner (from epoch 1; ``>=``).
        max_epochs: epochs at most per runner.
        max_seconds: a runner stops after the epoch in which its training time passes this.
        emit: receives each ``epoch`` line.

    Returns:
        name -> ``{"history": [(epoch, train_seconds, knn_auc)] of the trained epochs, "initial_knn_auc": epoch 0's,
        "stopped": reason, "dtype": ...}``.

    Example::

        results = run_interleaved([ours, lightly_runner], score, target=0.93, max_epochs=20, max_seconds=3600)
    """

    def record(runner: Any, epoch: int, seconds: float, epoch_seconds: float, losses: list[float], lr: float | None):
        start = time.perf_counter()
        auc, geometry = score(runner.network)
        line = {"kind": "epoch", "runner": runner.name, "epoch": epoch, "train_seconds": seconds,
                "epoch_seconds": epoch_seconds, "knn_auc": auc, "steps": len(losses),
                "loss": float(np.mean(losses)) if losses else None, "lr": lr,
                "score_seconds": time.perf_counter() - start, **geometry}  # fmt: skip
        emit(line)
        return auc

    state = {
        r.name: {"history": [], "stopped": None, "seconds": 0.0, "dtype": getattr(r, "dtype", None)} for r in runners
    }
    for runner in runners:  # epoch 0: the shared initial weights
        state[runner.name]["initial_knn_auc"] = record(runner, 0, 0.0, 0.0, [], None)
    for epoch in range(1, max_epochs + 1):
        active = [r for r in runners if state[r.name]["stopped"] is None]
        if not active:
            break
        shift = (epoch - 1) % len(active)
        for runner in active[shift:] + active[:shift]:
            s = state[runner.name]
            optimizer = getattr(runner, "optimizer", None)
            lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None
            start = time.perf_counter()
            losses = runner.train_epoch()
            took = time.perf_counter() - start
            s["seconds"] += took
            auc = record(runner, epoch, s["seconds"], took, losses, lr)
            s["history"].append((epoch, s["seconds"], auc))
            if not math.isnan(auc) and auc >= target:
                s["stopped"] = "target"
            elif epoch >= max_epochs:
                s["stopped"] = "max_epochs"
            elif s["seconds"] >= max_seconds:
                s["stopped"] = "max_seconds"
    for s in state.values():
        s["stopped"] = s["stopped"] or "max_epochs"
    return {name: {k: s[k] for k in ("history", "initial_knn_auc", "stopped", "dtype")} for name, s in state.items()}


def summarise(results: dict[str, dict[str, Any]], target: float) -> dict[str, Any]:
    """The ``summary`` line's comparison of :func:`run_interleaved`'s results.

    Args:
        results: name -> ``{"history": [(epoch, train_seconds, knn_auc)], "stopped", "dtype"}`` and optionally
            ``"initial_knn_auc"``.
        target: the kNN AUC target.

    Returns:
        ``target``, ``runners`` (name -> ``time_to_target``, ``epochs_to_target``, ``initial_knn_auc`` (untrained),
        ``best_knn_auc`` (over the trained epochs), ``epochs``, ``train_seconds``, ``stopped``, ``dtype``) and
        ``ratio``: lightly's time-to-target / ours when both reached it, else None; ``target_at_or_below_initial``:
        whether an untrained network already scores the target (time-to-target then times one epoch, not learning);
        ``equal_epochs`` and ``equal_epoch_time_ratio``: lightly's training time / ours over the epochs both trained.

    Example::

        summarise({"ours": {"history": [(1, 30.0, 0.95)], "stopped": "target", "dtype": "bfloat16"},
                   "lightly": {"history": [(1, 50.0, 0.94)], "stopped": "target", "dtype": "float32"}}, 0.93)
        # ratio 50 / 30
    """
    runners: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        history = result["history"]
        reached = next(((e, t) for e, t, auc in history if not math.isnan(auc) and auc >= target), None)
        aucs = [auc for _, _, auc in history if not math.isnan(auc)]
        runners[name] = {
            "time_to_target": reached[1] if reached else None,
            "epochs_to_target": reached[0] if reached else None,
            "initial_knn_auc": result.get("initial_knn_auc"),
            "best_knn_auc": max(aucs) if aucs else None,
            "epochs": history[-1][0] if history else 0,
            "train_seconds": history[-1][1] if history else 0.0,
            "stopped": result["stopped"],
            "dtype": result.get("dtype"),
        }
    ours, lightly = (runners.get(n, {}).get("time_to_target") for n in RUNNERS)
    ratio = lightly / ours if ours and lightly is not None else None
    initial = [r["initial_knn_auc"] for r in runners.values() if r["initial_knn_auc"] is not None]
    trivial = any(not math.isnan(auc) and auc >= target for auc in initial)
    return {"target": target, "runners": runners, "ratio": ratio, "target_at_or_below_initial": trivial,
            **_equal_epoch_ratio(results)}


def _equal_epoch_ratio(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """lightly's cumulative training time / ours after the last epoch both runners trained (same recipe, same data).

    Defined even when no runner reaches the target, or when the untrained network already does: then it is the
    side-by-side speed comparison that remains.
    """
    times = [{e: t for e, t, _ in results[n]["history"]} if n in results else {} for n in RUNNERS]
    common = sorted(set(times[0]) & set(times[1]))
    if not common or not times[0][common[-1]]:
        return {"equal_epochs": None, "equal_epoch_time_ratio": None}
    e = common[-1]
    return {"equal_epochs": e, "equal_epoch_time_ratio": times[1][e] / times[0][e]}


def summary_from_lines(lines: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """The ``summary`` line a run with ``target`` would have printed, from the saved JSON lines of a longer run.

    A target only decides when a runner stops (everything before is the same seeded run), so one run to
    ``--max_epochs`` with an unreachable target gives the time-to-target of every lower target: each runner's
    epochs are cut at the first that reaches ``target``. Fields of the saved ``summary`` line (recipe, host facts)
    are kept; a runner that does not reach ``target`` keeps its saved ``stopped``.

    Args:
        lines: the parsed JSON lines of one run (``epoch`` lines and its ``summary`` line).
        target: the kNN AUC target.

    Returns:
        The ``summary`` line (with ``"resummarised": True``).

    Raises:
        ValueError: when ``lines`` hold no ``epoch`` line.

    Example::

        lines = [json.loads(x) for x in open("runs/bench_tta.jsonl")]
        summary_from_lines(lines, 0.97)["ratio"]
    """
    saved = next((d for d in reversed(lines) if d.get("kind") == "summary"), {})
    results: dict[str, dict[str, Any]] = {}
    for d in lines:
        if d.get("kind") != "epoch":
            continue
        auc = float("nan") if d["knn_auc"] is None else float(d["knn_auc"])
        saved_runner = saved.get("runners", {}).get(d["runner"], {})
        result = results.setdefault(
            d["runner"],
            {"history": [], "initial_knn_auc": None, "stopped": saved_runner.get("stopped", "max_epochs"),
             "dtype": saved_runner.get("dtype")},
        )  # fmt: skip
        if d["epoch"] == 0:
            result["initial_knn_auc"] = auc
        elif not any(a >= target for _, _, a in result["history"]):  # a live run stops at the target
            result["history"].append((int(d["epoch"]), float(d["train_seconds"]), auc))
            if auc >= target:
                result["stopped"] = "target"
    if not results:
        raise ValueError("summary_from_lines: no 'epoch' lines (is this a bench_time_to_accuracy output?).")
    return {**saved, "kind": "summary", **summarise(results, target), "resummarised": True}


def make_scorer(parser: ConfigParser, k: int) -> Callable[[nn.Module], tuple[float, dict[str, float]]]:
    """The shared scoring: the bundle's monitor subset (decoded once) and ``RepresentationMonitor.compute``.

    Args:
        parser: the parsed bundle.
        k: kNN neighbours.

    Returns:
        ``score(network) -> (knn_auc, geometry of the validation projections)``.

    Example::

        auc, geometry = make_scorer(parser, k=20)(network)
    """
    reference = list(parser.get_parsed_content("monitor_data#reference_loader"))
    validation = list(parser.get_parsed_content("monitor_data#validation_loader"))
    monitor = RepresentationMonitor(reference, validation, k=k)

    def score(network: nn.Module) -> tuple[float, dict[str, float]]:
        auc = monitor.compute(network)
        return auc, {name: float(v) for name, v in monitor.geometry.items()}

    return score


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config_file", nargs="+", default=list(BUNDLE_CONFIGS), help="the bundle's configs")
    parser.add_argument("--dataset_dir", help="class-folder training images (default: the bundle's dataset_dir)")
    parser.add_argument("--monitor_dir", help="class folder of the scoring subset (default: the bundle's monitor_dir)")
    parser.add_argument(
        "--monitor_group_pattern", default=KERMANY_PATIENT_PATTERN,
        help="regular expression for the patient id in the subset's file names ('' splits per image)",
    )
    parser.add_argument("--target", type=float, default=0.93, help="kNN AUC that ends a runner")
    parser.add_argument("--max_epochs", type=int, help="epochs at most (default: the bundle's epochs)")
    parser.add_argument("--max_seconds", type=float, default=math.inf, help="training seconds at most per runner")
    parser.add_argument("--k", type=int, default=20, help="kNN neighbours")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, help="default: the bundle's seed")
    for name in ("max_images", "image_size", "batch_size", "monitor_images", "queue_size"):
        parser.add_argument(f"--{name}", type=int, help=f"override the bundle's {name} (tests, smaller runs)")
    parser.add_argument("--ours_only", action="store_true", help="run without lightly (its runner is left out)")
    parser.add_argument(
        "--from_lines", type=Path, help="print the summary of this saved run's JSON lines at --target and exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON lines.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0, or 2 when lightly is missing without ``--ours_only`` (not needed with ``--from_lines``).

    Example::

        main(["--max_images", "64", "--image_size", "32", "--batch_size", "16", "--max_epochs", "1"])
    """
    args = parse_args(argv)
    if args.from_lines:
        lines = [json.loads(x) for x in args.from_lines.read_text().splitlines() if x.startswith("{")]
        print_json_line(summary_from_lines(lines, args.target))
        return 0
    if not args.ours_only and not lightly_available():
        print(
            "bench_time_to_accuracy: lightly is not installed, so there is no reference to compare with. Install the "
            "bench extra (.venv/bin/python -m pip install -e '.[bench]'), or pass --ours_only.",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("max_images", "image_size", "batch_size", "monitor_images", "queue_size", "seed")
        if getattr(args, name) is not None
    }
    overrides.update({name: getattr(args, name) for name in ("dataset_dir", "monitor_dir") if getattr(args, name)})
    overrides["monitor_group_pattern"] = args.monitor_group_pattern or None
    if args.max_epochs:
        overrides["epochs"] = args.max_epochs  # the cosine schedule spans the run
    with tempfile.TemporaryDirectory(prefix="bench_tta_") as tmp:
        parser = load_bundle(args.config_file, {"output_dir": tmp, **overrides})
        parser.get_parsed_content("initialize")  # the bundle's seeding and malloc settings, process-wide
        recipe = Recipe.from_parser(parser)
        ours = OursRunner(parser)
        runners: list[Any] = [ours]
        if not args.ours_only:
            images = decoded_images(parser.get_parsed_content("train#dataset"))
            runners.append(LightlyRunner(images, ours.network, recipe))
        score = make_scorer(parser, args.k)
        results = run_interleaved(runners, score, args.target, recipe.epochs, args.max_seconds)
    summary = summarise(results, args.target)
    if summary["target_at_or_below_initial"]:
        initial = max(r["initial_knn_auc"] for r in summary["runners"].values())
        print(
            f"bench_time_to_accuracy: the untrained network already scores kNN AUC {initial:.3f} >= --target "
            f"{args.target} on this subset, so time-to-target times the first epoch, not learning; raise --target or "
            "score on a harder subset (--monitor_dir).",
            file=sys.stderr,
        )
    print_json_line(
        {
            "kind": "summary",
            **summary,
            "max_epochs": recipe.epochs,
            "max_seconds": None if math.isinf(args.max_seconds) else args.max_seconds,
            "k": args.k,
            "monitor_group_pattern": overrides["monitor_group_pattern"],
            "config_file": [str(f) for f in args.config_file],
            "recipe": asdict(recipe),
            "amp": ours.dtype,
            "cpu_flags": cpu_flags(),
            **machine_info(),
        }
    )
    return 0
