"""The shared training step of the contrastive pretraining engines (MoCo-v2, SimCLR).

``ContrastiveTrainer`` is a ``monai.engines.Trainer`` that owns, once, everything the two methods have in common: two
views per image (from the batch or made on the device by a batched view transform), mixed precision (``amp="auto"``:
fp16 + ``GradScaler`` on CUDA, bf16 on CPUs with native bf16, off where bf16 is emulated), gradient accumulation,
gradient clipping, a non-finite guard that stops the run before a bad step touches the weights, the MONAI
``IterationEvents`` and a flat dictionary of scalar health statistics in ``engine.state.output``. ``MoCoTrainer`` and ``SimCLRTrainer`` only write their forward pass and loss.

References:
    He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.utils import IgniteInfo, look_up_option, min_version, optional_import
from monai.utils.enums import CommonKeys as Keys
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_moco.losses.utils import contrastive_accuracy, logit_stats
from monai_moco.utils.cpu import bf16_native

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = [
    "ContrastiveTrainer",
    "NonFiniteLossError",
    "PrepareTwoViewBatch",
    "StepOptions",
    "TorchRNGState",
    "AMP_MODES",
    "amp_pays",
    "checkpoint_dict",
    "default_amp_dtype",
]


class NonFiniteLossError(RuntimeError):
    """Raised when the loss (or the gradient norm) of a training step is NaN or infinite.

    The engine raises it before ``backward``/``optimizer.step``, restores the normalisation buffers touched by the
    failing forward pass and rolls ``engine.state.iteration`` back by one, so the network, the momentum encoder,
    the queue, the optimizer and any checkpoint written at the exception (MONAI ``CheckpointSaver(save_final=True)``)
    are the last good state, labelled with the last good iteration.
    """


AMP_MODES = (True, False, "auto")


def amp_pays(device: str | torch.device) -> bool:
    """Whether autocast speeds training up on ``device``: what ``amp="auto"`` resolves to.

    True on CUDA (fp16 with a ``GradScaler``) and on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX,
    ``monai_moco.utils.cpu.bf16_native``). False elsewhere: on CPUs where bf16 is emulated (AVX2 only), where a
    bf16 autocast training step is many times slower than fp32, and on device types other than CUDA and CPU, whose
    autocast this package does not measure.

    Args:
        device: the training device.

    Returns:
        True where autocast pays.

    Example::

        amp_pays("cpu")  # True with AMX or AVX-512 BF16, False on an AVX2-only CPU
    """
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bf16_native()


def default_amp_dtype(device: str | torch.device) -> torch.dtype:
    """The autocast dtype used when ``amp`` is on and no ``amp_dtype`` is given.

    Args:
        device: the training device.

    Returns:
        ``torch.float16`` on CUDA (with a ``GradScaler``); ``torch.bfloat16`` on CPU.

    Example::

        default_amp_dtype("cpu")  # torch.bfloat16
    """
    device = torch.device(device)
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _to_tensor(x: Any, device: torch.device | None, non_blocking: bool, **kwargs: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    return x.to(device=device, non_blocking=non_blocking, **kwargs)


class PrepareTwoViewBatch(PrepareBatch):
    """Take two views (or one image batch to be augmented on the device) from a data-loader batch.

    Accepted batches: a dictionary with ``view_keys`` (e.g. from ``monai_moco.transforms.TwoViewd``), a dictionary
    with only ``image_key`` (views are then made by the trainer's ``view_transform``), a ``(view1, view2)`` pair, or a
    single image tensor. MetaTensors become plain tensors (the engines need no meta data; it also keeps
    ``torch.compile`` happy).

    Args:
        view_keys: dictionary keys of the two views.
        image_key: dictionary key of the un-augmented image batch.

    Returns:
        ``(view1, view2)`` on ``device``, or the image tensor on ``device``.

    Raises:
        KeyError: when a dictionary batch has neither both ``view_keys`` nor ``image_key``.

    Example::

        prepare = PrepareTwoViewBatch(view_keys=("view1", "view2"))
        v1, v2 = prepare({"view1": torch.rand(4, 1, 64, 64), "view2": torch.rand(4, 1, 64, 64)}, "cpu")
    """

    def __init__(self, view_keys: Sequence[str] = ("view1", "view2"), image_key: str = "image") -> None:
        if len(view_keys) != 2:
            raise ValueError(f"view_keys must name exactly two keys, got {view_keys!r}.")
        self.view_keys = tuple(view_keys)
        self.image_key = image_key

    def __call__(
        self,
        batchdata: Any,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        if isinstance(batchdata, dict):
            if all(k in batchdata for k in self.view_keys):
                k1, k2 = self.view_keys
                return (
                    _to_tensor(batchdata[k1], device, non_blocking, **kwargs),
                    _to_tensor(batchdata[k2], device, non_blocking, **kwargs),
                )
            if self.image_key in batchdata:
                return _to_tensor(batchdata[self.image_key], device, non_blocking, **kwargs)
            raise KeyError(
                f"the batch has keys {sorted(batchdata)}, expected both {list(self.view_keys)} (two augmented views, "
                f"e.g. from TwoViewd) or {self.image_key!r} (augmented on the device by the trainer's view_transform)."
            )
        if isinstance(batchdata, (list, tuple)) and len(batchdata) == 2:
            return (
                _to_tensor(batchdata[0], device, non_blocking, **kwargs),
                _to_tensor(batchdata[1], device, non_blocking, **kwargs),
            )
        return _to_tensor(batchdata, device, non_blocking, **kwargs)


class TorchRNGState:
    """Checkpointable view of torch's global random generators (CPU and, when present, CUDA).

    Put it in a checkpoint's ``save_dict`` so a resumed run draws the same random numbers (data-loader shuffling,
    ShuffleBN permutations, dropout) as the uninterrupted run. ``checkpoint_dict`` adds it as ``"rng"``.

    Example::

        rng = TorchRNGState()
        state = rng.state_dict()
        torch.rand(1)
        rng.load_state_dict(state)  # the next torch.rand(1) repeats
    """

    def state_dict(self) -> dict[str, Any]:
        """Returns: ``{"cpu": ByteTensor, "cuda": [ByteTensor, ...]}``."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the generators saved by ``state_dict``."""
        torch.set_rng_state(state_dict["cpu"].cpu())
        if state_dict.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state_dict["cuda"]])


class _GeneratorState:
    """Checkpointable state of one ``torch.Generator`` (the batched view transform's), fetched when needed."""

    def __init__(self, get_generator: Callable[[], torch.Generator]) -> None:
        self.get_generator = get_generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.get_generator().get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.get_generator().set_state(state_dict["state"].cpu())


@dataclass
class StepOptions:
    """How a contrastive training step runs: precision, memory format, compilation and the optimizer step.

    Grouped apart from the engine arguments because every recipe sets a few of them and the step reads all of them.

    Args:
        amp: autocast the forward passes: ``True``, ``False`` (default) or ``"auto"`` (on where it pays,
            ``amp_pays(device)``: CUDA, and CPUs with native bf16; off on CPUs where bf16 is emulated and many times
            slower than fp32). ``True`` on such a CPU is honoured with a warning.
        amp_dtype: autocast dtype (a ``torch.dtype`` or its name); default ``default_amp_dtype(device)`` (bf16 on CPU,
            fp16 on CUDA). fp16 on CUDA uses a ``torch.amp.GradScaler`` (the trainer's ``scaler``, saved by
            ``checkpoint_dict``).
        channels_last: convert the network (in place: the optimizer's parameters stay the same objects) and the views
            to the channels-last memory format, which oneDNN (CPU) and cuDNN convolutions run faster, especially under
            autocast. Token-only networks (ViTs) are unaffected apart from their conv stem.
            ``torch.optim.SGD(fused=True)`` then copies each 4-D weight to contiguous and back on every step;
            ``monai_moco.optimizers.FlatViewSGD`` steps them in place.
        compile: ``torch.compile`` the forward callables (the modules themselves stay un-compiled, so checkpoints have
            clean keys).
        compile_kwargs: arguments of ``torch.compile``.
        clip_grad_norm: clip the total gradient 2-norm to this value (None: no clipping; the norm is still measured and
            a non-finite norm stops the run, except under fp16 where ``GradScaler`` skips the step).
        accumulation_steps: micro-batches per optimizer step (the loss is divided by it; an epoch's last micro-batch
            always steps, as in MONAI's ``SupervisedTrainer``).
        set_to_none: ``optimizer.zero_grad(set_to_none=...)``; default True, torch's default, so backward writes fresh
            gradients instead of adding to zero-filled ones (MONAI's trainers default to False).

    Raises:
        ValueError: for an ``amp`` not in ``AMP_MODES``, ``accumulation_steps < 1`` or ``clip_grad_norm <= 0``.

    Example::

        MoCoTrainer(..., step=StepOptions(amp="auto", channels_last=True, clip_grad_norm=3.0))
    """

    amp: bool | str = False
    amp_dtype: torch.dtype | str | None = None
    channels_last: bool = False
    compile: bool = False
    compile_kwargs: dict[str, Any] = field(default_factory=dict)
    clip_grad_norm: float | None = None
    accumulation_steps: int = 1
    set_to_none: bool = True

    def __post_init__(self) -> None:
        self.amp = look_up_option(self.amp, AMP_MODES)
        if isinstance(self.amp_dtype, str):
            self.amp_dtype = getattr(torch, self.amp_dtype.removeprefix("torch."))
        self.compile_kwargs = dict(self.compile_kwargs or {})
        if self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be a positive integer, got {self.accumulation_steps!r}.")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive or None, got {self.clip_grad_norm!r}.")


class ContrastiveTrainer(Trainer):
    """Base engine for two-view contrastive pretraining; subclasses write ``forward_views`` and ``compute_loss``.

    One iteration: take the two views (``prepare_batch``; or apply ``view_transform`` on the device to an image
    batch), forward under autocast (``forward_views``; fires ``FORWARD_COMPLETED``), the loss in float32
    (``compute_loss``; fires ``LOSS_COMPLETED``), stop with ``NonFiniteLossError`` if it is not finite, backward
    (divided by ``accumulation_steps``; fires ``BACKWARD_COMPLETED``), and on the last micro-batch of an accumulation
    cycle: unscale, measure and clip the gradient norm, step, then ``after_step`` (e.g. momentum update, enqueue).
    ``MODEL_COMPLETED`` fires last. ``engine.state.output`` is then a flat dict of Python floats: ``loss``, ``acc1``
    (top-1 of the contrastive classification: the positive among all candidates), ``pos_logit``, ``neg_logit``
    (mean positive/negative logits), ``lr`` (first parameter group), ``grad_norm`` (last measured, before
    clipping) plus the subclass's ``extra_stats``. Log them all with
    ``monai_moco.handlers.contrastive_stats_handlers`` or ``StatsHandler(output_transform=lambda o: o)``.

    The signature is MONAI's ``SupervisedTrainer``'s core plus the two-view options: how the step runs is one
    :class:`StepOptions`, and the generic engine arguments pass through to ``monai.engines.Trainer``.

    Args:
        device: the training device.
        max_epochs: total number of epochs.
        train_data_loader: iterable of batches (see ``PrepareTwoViewBatch`` for accepted layouts).
        network: the trained encoder (``monai_moco.networks.nets.ContrastiveEncoder``: ``forward`` gives the
            projection). Kept un-compiled in ``self.network`` so checkpoints have clean keys.
        optimizer: optimizer over ``network``'s parameters (``torch.optim.SGD``, ``AdamW`` or
            ``monai_moco.optimizers.LARS``).
        loss_function: the contrastive loss module; default ``default_loss_function()`` (the method's loss).
        view_transform: callable ``images (B, C, H, W) -> (view1, view2)`` applied on the device without gradient
            when a batch carries only the image (e.g. ``monai_moco.transforms.ssl.BatchedTwoView``). Its random
            generator (``generator_for(device)`` or a ``generator`` attribute) joins ``checkpoint_dict`` so a resumed
            run draws the same views.
        step: how the step runs (autocast, channels-last, compile, clipping, accumulation); default ``StepOptions()``.
        train_handlers: handlers with ``attach`` (StatsHandler, CheckpointSaver, LrScheduleHandler, ...), attached once
            the subclass has built its parts. MONAI's ``StatsHandler`` re-raises in its exception handler, so list a
            checkpoint saver with ``save_final=True`` BEFORE it, or its exception-time save never runs.
        engine_kwargs: ``monai.engines.Trainer`` arguments (``epoch_length``, ``non_blocking``, ``prepare_batch``,
            ``iteration_update``, ``postprocessing``, ``key_metric``, ``additional_metrics``, ``metric_cmp_fn``,
            ``event_names``, ``event_to_attr``, ``decollate``, ``to_kwargs``). Defaults differ in two:
            ``prepare_batch=PrepareTwoViewBatch()`` and ``decollate=False`` (the output is already a dict of scalars).

    Example::

        trainer = MoCoTrainer(device, 10, loader, net, opt, view_transform=BatchedTwoView(spatial_size=224),
                              step=StepOptions(amp="auto", channels_last=True), epoch_length=100)
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: torch.nn.Module | Callable | None = None,
        view_transform: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        step: StepOptions | None = None,
        train_handlers: Sequence | None = None,
        **engine_kwargs: Any,
    ) -> None:
        step = StepOptions() if step is None else step
        amp = step.amp
        if amp == "auto":
            amp = amp_pays(device)
        elif amp and torch.device(device).type == "cpu" and not bf16_native():
            warnings.warn(
                "amp=True on a CPU without native bfloat16 (no AVX-512 BF16 / AMX): bf16 is emulated here and typically "
                "many times slower than float32; use amp='auto' (or False) on this machine.",
                stacklevel=2,
            )
        self.amp_dtype: torch.dtype = step.amp_dtype if step.amp_dtype is not None else default_amp_dtype(device)
        engine_kwargs.setdefault("decollate", False)
        if engine_kwargs.get("prepare_batch") is None:
            engine_kwargs["prepare_batch"] = PrepareTwoViewBatch()
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            handlers=None,  # attached at the end of the subclass's __init__, once it has built its parts
            amp=amp,
            **engine_kwargs,
        )
        self.step = step
        if step.channels_last:
            network.to(memory_format=torch.channels_last)  # in place, so subclasses' copies (MoCo's key encoder) follow
        self.network = network
        self.optimizer = optimizer
        self.loss_function = self.default_loss_function() if loss_function is None else loss_function
        self.view_transform = view_transform
        self.scaler = (
            torch.amp.GradScaler("cuda")
            if amp and self.amp_dtype == torch.float16 and self.state.device.type == "cuda"
            else None
        )
        self.last_grad_norm = 0.0
        self._network_fn = self.maybe_compile(network)
        self._train_handlers = train_handlers

    def _attach_train_handlers(self) -> None:
        """Attach ``train_handlers``; subclasses call it at the end of their ``__init__``."""
        if self._train_handlers is not None:
            self._register_handlers(self._train_handlers)
            self._train_handlers = None

    def maybe_compile(self, module: torch.nn.Module) -> Callable:
        """Returns: ``torch.compile(module)`` when ``step.compile``, else ``module``."""
        return torch.compile(module, **self.step.compile_kwargs) if self.step.compile else module

    def run(self) -> None:  # type: ignore[override]
        """Train; a second call continues from the current state (e.g. after ``CheckpointLoader``).

        Unlike ``monai.engines.Trainer.run`` this keeps the ``GradScaler`` made in ``__init__`` (so its state can be
        checkpointed and resumed) and creates none for bf16 or CPU autocast.
        """
        self._attach_train_handlers()
        super(Trainer, self).run()

    # ----------------------------------------------------------------------------------------------------------
    # what subclasses write
    def default_loss_function(self) -> torch.nn.Module:
        """The method's loss with its paper's settings, used when no ``loss_function`` is given."""
        raise NotImplementedError(f"{type(self).__name__} needs a loss_function.")

    def forward_views(self, view1: torch.Tensor, view2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward both views (under autocast). Returns a dict of tensors, put in ``engine.state.output``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_views.")

    def compute_loss(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss from ``forward_views``'s outputs (cast to float32). Returns ``(loss, logits, labels)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss.")

    def batch_targets(self, batchdata: Any) -> dict[str, torch.Tensor]:
        """Tensors of the batch the loss needs besides the views (e.g. class labels for a supervised contrastive
        loss), on the training device; merged into the outputs that ``compute_loss`` receives. Default: none."""
        return {}

    def after_backward(self, outputs: dict[str, torch.Tensor]) -> None:
        """Hook after every finite micro-batch's backward (e.g. MoCo keeps its keys for the queue)."""

    def after_step(self) -> None:
        """Hook after every optimizer step (e.g. MoCo's momentum update and enqueue)."""

    def extra_stats(self) -> dict[str, float]:
        """More scalars for ``engine.state.output`` (e.g. MoCo's ``queue_fill`` and ``momentum``)."""
        return {}

    def checkpoint_items(self) -> dict[str, Any]:
        """Objects with ``state_dict``/``load_state_dict`` that a resumable checkpoint needs (see ``checkpoint_dict``)."""
        items: dict[str, Any] = {"network": self.network, "optimizer": self.optimizer, "trainer": self}
        if self.scaler is not None:
            items["scaler"] = self.scaler
        vt = self.view_transform
        if callable(getattr(vt, "generator_for", None)):  # BatchedTwoView: generator made lazily per device
            items["view_transform"] = _GeneratorState(lambda: vt.generator_for(self.state.device))
        elif isinstance(getattr(vt, "generator", None), torch.Generator):
            items["view_transform"] = _GeneratorState(lambda: vt.generator)
        items["rng"] = TorchRNGState()
        return items

    # ----------------------------------------------------------------------------------------------------------
    # the shared step
    def autocast(self) -> contextlib.AbstractContextManager:
        """Returns: the autocast context of this engine (a no-op when ``amp=False``)."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.state.device.type, dtype=self.amp_dtype)

    def train_mode(self) -> None:
        """Put the trained modules in training mode (subclasses add theirs)."""
        self.network.train()

    def buffers_to_guard(self) -> list[torch.Tensor]:
        """Buffers a training forward pass may change (BatchNorm statistics and counters); restored on a non-finite
        loss. They are small (about 0.1 % of a ResNet's parameters), so the per-iteration copy is cheap."""
        return list(self.network.buffers())

    def _views(self, engine: Engine, batchdata: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            return self._memory_format(batch[0]), self._memory_format(batch[1])
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"prepare_batch must return (view1, view2) or an image tensor, got {type(batch).__name__}.")
        if self.view_transform is None:
            raise ValueError(
                f"the batch carries one image tensor of shape {tuple(batch.shape)} but the trainer has no "
                "view_transform: pass view_transform=BatchedTwoView(...) or give batches 'view1'/'view2' (TwoViewd)."
            )
        with torch.no_grad():
            views = self.view_transform(batch)
        return self._memory_format(views[0]), self._memory_format(views[1])

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        if self.step.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _accumulation_flags(self, engine: Engine) -> tuple[bool, bool]:
        acc = self.step.accumulation_steps
        if acc == 1:
            return True, True
        epoch_length = engine.state.epoch_length
        local_iter = engine.state.iteration - 1
        if epoch_length is not None:
            local_iter %= epoch_length
            return local_iter % acc == 0, (local_iter + 1) % acc == 0 or (local_iter + 1) == epoch_length
        return local_iter % acc == 0, (local_iter + 1) % acc == 0

    def _stop_non_finite(self, engine: Engine, what: str, value: float, snapshot: list[tuple]) -> None:
        for buf, saved in snapshot:
            buf.copy_(saved)
        iteration, epoch = engine.state.iteration, engine.state.epoch
        engine.state.iteration = iteration - 1  # the saved state is that of the last good iteration
        raise NonFiniteLossError(
            f"{type(self).__name__}: non-finite {what} ({value}) at iteration {iteration} (epoch {epoch}); the "
            "optimizer step was skipped, so network, momentum encoder and queue keep the state of iteration "
            f"{iteration - 1}. Try a lower learning rate or warm-up, gradient clipping (clip_grad_norm), "
            "amp=False (or bf16 instead of fp16), and check the data for NaN/constant images."
        )

    def _iteration(self, engine: ContrastiveTrainer, batchdata: Any) -> dict[str, float]:
        """One training step; see the class docstring.

        Args:
            engine: this trainer.
            batchdata: a batch of the data loader.

        Returns:
            the dict of scalar statistics also stored in ``engine.state.output``.

        Raises:
            NonFiniteLossError: when the loss or the gradient norm is NaN/Inf (before the optimizer step).
        """
        view1, view2 = self._views(engine, batchdata)
        should_zero_grad, should_step = self._accumulation_flags(engine)
        self.train_mode()
        if should_zero_grad:
            self.optimizer.zero_grad(set_to_none=self.step.set_to_none)
        snapshot = [(b, b.detach().clone()) for b in self.buffers_to_guard()]

        with self.autocast():
            outputs = self.forward_views(view1, view2)
        engine.state.output = dict(outputs)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)

        outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in outputs.items()}
        outputs.update(self.batch_targets(batchdata))
        loss, logits, labels = self.compute_loss(outputs)
        engine.state.output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss_value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            self._stop_non_finite(engine, "loss", loss_value, snapshot)

        acc = self.step.accumulation_steps
        scaled = loss / acc if acc > 1 else loss
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        self.after_backward(outputs)

        if should_step:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
            self.last_grad_norm = float(grad_norm)
            if self.scaler is None and not torch.isfinite(grad_norm):
                self._stop_non_finite(engine, "gradient norm", self.last_grad_norm, snapshot)
            if self.step.clip_grad_norm is not None and params:
                torch.nn.utils.clip_grads_with_norm_(params, self.step.clip_grad_norm, grad_norm)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.after_step()

        engine.state.output = self._stats(loss_value, logits.detach(), labels)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _stats(self, loss_value: float, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        pos_logit, neg_logit = logit_stats(logits, labels)
        out = {
            "loss": loss_value,
            "acc1": contrastive_accuracy(logits, labels, topk=(1,))["top1"],
            "pos_logit": pos_logit,
            "neg_logit": neg_logit,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "grad_norm": self.last_grad_norm,
        }
        out.update(self.extra_stats())
        return out


def checkpoint_dict(trainer: ContrastiveTrainer, lr_scheduler: Any | None = None, **extra: Any) -> dict[str, Any]:
    """The ``save_dict``/``load_dict`` that makes a contrastive run resumable, for MONAI's checkpoint handlers.

    Holds the network, optimizer and trainer (epoch/iteration; MoCo's momentum schedule follows the iteration),
    plus, where present, ``momentum_network`` and ``queue`` (MoCo), ``scaler`` (fp16), ``view_transform`` (the
    batched view generator), ``rng`` (torch's global generators) and ``lr_scheduler``.

    Args:
        trainer: a ``MoCoTrainer`` or ``SimCLRTrainer``.
        lr_scheduler: the learning-rate scheduler driven by ``LrScheduleHandler``, if any.
        extra: more objects to save (name -> object with ``state_dict``).

    Returns:
        dict name -> object with ``state_dict``/``load_state_dict``.

    Example::

        save = checkpoint_dict(trainer, lr_scheduler=scheduler)
        AtomicCheckpointSaver(save_dir="runs/ckpt", save_dict=save, save_interval=1, n_saved=2).attach(trainer)
        # later, in a new process with a freshly built trainer:
        CheckpointLoader(load_path="runs/ckpt/checkpoint_epoch=1.pt", load_dict=checkpoint_dict(trainer, scheduler),
                         map_location="cpu").attach(trainer)
    """
    items = trainer.checkpoint_items()
    if lr_scheduler is not None:
        items["lr_scheduler"] = lr_scheduler
    items.update(extra)
    return items
