"""The exported classifier as the deploy app sees it: a TorchScript file, its embedded configs, probabilities and
heat-maps.

``model.ts`` as written by ``python -m monai.bundle ckpt_export`` holds ``metadata.json`` (the bundle's
``metadata.json``: ``name``, ``version``, ``network_data_format`` with the input ``spatial_shape`` and the output
``channel_def`` class names) and the configs given with ``--config_file`` (e.g. ``inference.json`` with ``task``,
``class_names`` and ``image_size``). They are read as **data only**: a ``$`` expression or ``@`` reference in a
model file is never evaluated (it would be code from an untrusted file); a plain TorchScript file of any scripted
:class:`~monai_moco.networks.nets.XRayClassifier` works too, with class names and size passed explicitly.

Probabilities: ``softmax`` over the logits for binary/multi-class models (they sum to 1), ``sigmoid`` per class
for multi-label models (``task == "multilabel"`` in the embedded config, or ``activation="sigmoid"``) and for a
single-logit model.

Heat-maps come from :func:`monai_moco.visualize.heatmap.classifier_heatmap`: top-K patch scores, Grad-CAM or the input
gradient, whichever the model offers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.utils import look_up_option

from monai_moco.visualize.heatmap import HeatMap, classifier_heatmap

__all__ = ["ACTIVATIONS", "ExportedClassifier", "HeatMap"]

ACTIVATIONS: tuple[str, ...] = ("auto", "softmax", "sigmoid")
_CONFIG_FILES = ("inference.json", "train.json", "evaluate.json")


def _literal(value: Any) -> Any:
    """A config value if it is plain data (not a ``$`` expression or ``@`` reference)."""
    if isinstance(value, str) and value.startswith(("$", "@", "%")):
        return None
    return value


@dataclass
class ExportedClassifier:
    """A TorchScript (or eager) chest X-ray classifier plus what is needed to run and describe it.

    Attributes:
        model: the network (eval mode, CPU), images ``B x 1 x H x W`` in [0, 1] -> logits ``B x C``.
        class_names: one name per logit.
        image_size: ``(H, W)`` the model expects.
        activation: ``"softmax"`` or ``"sigmoid"``.
        name: model/bundle name.
        version: model/bundle version.
        source: file the model came from.
        metadata: the embedded ``metadata.json`` (empty for a plain TorchScript file).
        configs: the embedded configs by file name.

    Example::

        clf = ExportedClassifier.load("models/model.ts")
        probs = clf.probabilities(torch.rand(1, 1, *clf.image_size))  # {"normal": 0.4, "pneumonia": 0.6}
    """

    model: torch.nn.Module
    class_names: list[str]
    image_size: tuple[int, int]
    activation: str
    name: str = "model"
    version: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        image_size: int | Sequence[int] | None = None,
        activation: str = "auto",
    ) -> ExportedClassifier:
        """Load ``model.ts`` with its embedded ``metadata.json`` and configs (as data; see the module docstring).

        Args:
            path: TorchScript file (``ckpt_export`` output or any ``torch.jit.save``\\ d classifier), or an ``.onnx``
                file (``onnx_export`` output, run by onnxruntime: see :mod:`monai_moco.deploy.onnx_model`).
            class_names: override/give the class names (default: metadata ``channel_def``, then the config's
                ``class_names``, then ``class_0..``).
            image_size: override/give the input size (default: metadata ``spatial_shape``, then the config's
                ``image_size``, then 224).
            activation: ``"auto"`` (sigmoid for ``task == "multilabel"`` or one logit, else softmax),
                ``"softmax"`` or ``"sigmoid"``.

        Returns:
            the classifier.

        Raises:
            FileNotFoundError: when ``path`` does not exist.
            ValueError: when it is not a TorchScript file, or the class names do not match the logits.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file {path!r} does not exist.")
        if path.lower().endswith(".onnx"):  # onnxruntime on CPU, no heat-maps (monai_moco.deploy.onnx_model)
            from monai_moco.deploy.onnx_model import load_onnx_classifier

            return load_onnx_classifier(path, class_names, image_size, activation)
        extra = dict.fromkeys(("metadata.json", *_CONFIG_FILES), "")
        try:
            model = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        except Exception as err:  # not a TorchScript zip, or a corrupt one
            raise ValueError(
                f"{path!r} is not a TorchScript model ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                "export one with `python -m monai.bundle ckpt_export` or torch.jit.save(torch.jit.script(model))."
            ) from None
        docs = {}
        for key, text in extra.items():
            if text:
                try:
                    docs[key] = json.loads(text)
                except (TypeError, ValueError):
                    raise ValueError(f"{path!r}: embedded {key} is not valid JSON.") from None
        meta = docs.pop("metadata.json", {})
        return cls.from_module(model, meta, docs, class_names, image_size, activation, source=path)

    @classmethod
    def from_module(
        cls,
        model: torch.nn.Module,
        metadata: dict[str, Any] | None = None,
        configs: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        image_size: int | Sequence[int] | None = None,
        activation: str = "auto",
        source: str = "",
    ) -> ExportedClassifier:
        """Wrap an already loaded network (see :meth:`load` for the arguments).

        Args:
            model: the network.
            metadata: bundle metadata.
            configs: bundle configs by file name.
            class_names: class names.
            image_size: input size.
            activation: ``"auto"``, ``"softmax"`` or ``"sigmoid"``.
            source: where it came from.

        Returns:
            the classifier.

        Raises:
            ValueError: when the class names do not match the number of logits.
        """
        activation = look_up_option(activation, ACTIVATIONS)
        meta, configs = dict(metadata or {}), dict(configs or {})
        fmt = meta.get("network_data_format", {}) if isinstance(meta.get("network_data_format"), dict) else {}
        out_def = next(iter(fmt.get("outputs", {}).values()), {}) if isinstance(fmt.get("outputs"), dict) else {}
        in_def = next(iter(fmt.get("inputs", {}).values()), {}) if isinstance(fmt.get("inputs"), dict) else {}
        config = next((configs[k] for k in _CONFIG_FILES if isinstance(configs.get(k), dict)), {})
        if class_names is None:
            channel_def = out_def.get("channel_def") if isinstance(out_def, dict) else None
            if isinstance(channel_def, dict) and channel_def:
                class_names = [str(channel_def[k]) for k in sorted(channel_def, key=lambda k: int(k))]
            elif isinstance(_literal(config.get("class_names")), list):
                class_names = [str(c) for c in config["class_names"]]
        if image_size is None:
            shape = in_def.get("spatial_shape") if isinstance(in_def, dict) else None
            if isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) for s in shape):
                image_size = shape
            elif isinstance(_literal(config.get("image_size")), int):
                image_size = config["image_size"]
            else:
                image_size = 224
        size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        model = model.eval().cpu()
        with torch.no_grad():
            probe = model(torch.zeros(1, 1, *size))
        if probe.ndim != 2 or probe.shape[0] != 1:
            raise ValueError(f"{source or 'model'}: expected logits 1 x C for a 1 x 1 x {size[0]} x {size[1]} input, "
                             f"got shape {tuple(probe.shape)}.")
        num = int(probe.shape[1])
        if class_names is None:
            class_names = [f"class_{i}" for i in range(num)]
        class_names = [str(c) for c in class_names]
        if len(class_names) != num:
            raise ValueError(f"{source or 'model'}: {len(class_names)} class names {class_names} for {num} logits.")
        if activation == "auto":
            multilabel = _literal(config.get("task")) == "multilabel" or meta.get("multilabel") is True
            activation = "sigmoid" if multilabel or num == 1 else "softmax"
        return cls(model, class_names, size, activation, str(meta.get("name") or os.path.basename(source) or "model"),
                   str(meta.get("version") or ""), source, meta, configs)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Raw logits.

        Args:
            images: ``B x 1 x H x W`` in [0, 1].

        Returns:
            ``B x C``.
        """
        with torch.no_grad():
            return self.model(images.float())

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits (softmax over classes, or a sigmoid per class).

        Args:
            logits: ``B x C``.

        Returns:
            ``B x C`` in [0, 1].
        """
        return torch.softmax(logits, dim=1) if self.activation == "softmax" else torch.sigmoid(logits)

    def probabilities(self, image: torch.Tensor) -> dict[str, float]:
        """Class probabilities of one image.

        Args:
            image: ``1 x H x W`` (or ``1 x 1 x H x W``).

        Returns:
            ``{class name: probability}``.
        """
        x = image if image.ndim == 4 else image[None]
        probs = self.activate(self.logits(x))[0]
        return {name: float(p) for name, p in zip(self.class_names, probs.tolist(), strict=True)}

    def heatmap(self, image: torch.Tensor, class_index: int | None = None) -> HeatMap:
        """A saliency grid for one image (see :func:`~monai_moco.visualize.heatmap.classifier_heatmap`).

        Args:
            image: ``1 x H x W`` model input.
            class_index: class to explain (default: the most probable).

        Returns:
            the :class:`~monai_moco.visualize.heatmap.HeatMap`.

        Raises:
            RuntimeError: when the model offers no heat-map (no top-K head, not a ResNet, no input gradient).
        """
        x = (image if image.ndim == 4 else image[None]).float()
        if class_index is None:
            class_index = int(self.logits(x)[0].argmax())
        return classifier_heatmap(self.model, x, class_index)
