"""An ONNX classifier for the deploy app: onnxruntime on CPU behind the ``torch.nn.Module`` interface that
:class:`~monai_moco.deploy.model.ExportedClassifier` runs (``B x 1 x H x W`` in [0, 1] -> logits ``B x C``).

``python -m monai.bundle onnx_export`` writes the network only: unlike ``ckpt_export`` it embeds neither
``metadata.json`` nor the configs. The input size is therefore read from the graph (its static ``H x W``); class names
come from ``--class-names`` (else ``class_0..``), or from the model's ONNX ``metadata_props`` when a ``metadata.json``
(and configs, under their file names) were added there, which are then read as data only, as for TorchScript.

Heat-maps need gradients, which onnxruntime does not compute: :meth:`OnnxRuntimeModule.forward` raises a
``RuntimeError`` saying so when asked for one, and the app writes the image's JSON and SR without a heat-map, the
reason in the JSON (use the TorchScript ``model.ts`` for heat-maps). Needs ``onnxruntime`` (extra ``onnx``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monai_moco.deploy.model import _CONFIG_FILES, ExportedClassifier

__all__ = ["OnnxRuntimeModule", "load_onnx_classifier"]


class OnnxRuntimeModule(torch.nn.Module):
    """An ONNX image classifier run by onnxruntime (``CPUExecutionProvider``), called like a PyTorch module.

    Inputs are sent as float32 NumPy arrays; a model exported with a fixed batch size gets chunks of that size (the
    last one zero-padded, its padding dropped from the output). No gradient flows through it.

    Args:
        path: the ``.onnx`` file (one input ``B x 1 x H x W``, first output the logits ``B x C``).
        num_threads: onnxruntime intra-op threads (default ``torch.get_num_threads()``).

    Raises:
        ImportError: when onnxruntime is not installed.
        ValueError: when the file is not an ONNX model onnxruntime can load, or it has not exactly one 4-D input.

    Example::

        net = OnnxRuntimeModule("runs/cxr_classifier/models/model.onnx")
        logits = net(torch.rand(8, 1, *net.input_size))  # 8 x C
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(f"running {os.fspath(path)!r} needs onnxruntime: pip install 'monai_moco[onnx]' "
                              f"({err}).") from err
        self.source = os.fspath(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.source, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for invalid or corrupt files
            raise ValueError(f"{self.source!r} is not an ONNX model onnxruntime can load ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]}).") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            found = [(i.name, list(i.shape)) for i in inputs]
            raise ValueError(f"{self.source!r}: expected one input of shape B x 1 x H x W, found {found}.")
        self.input_name: str = inputs[0].name
        self.input_shape: list[Any] = list(inputs[0].shape)
        self.output_name: str = self.session.get_outputs()[0].name
        self.metadata_props: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The static ``(H, W)`` of the graph input, ``None`` when either is dynamic."""
        h, w = self.input_shape[2:]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph was exported with, ``None`` for a dynamic batch axis."""
        b = self.input_shape[0]
        return b if isinstance(b, int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from onnxruntime.

        Args:
            x: ``B x 1 x H x W``.

        Returns:
            ``B x C`` float32 on CPU, without gradient.

        Raises:
            RuntimeError: when ``x`` requires a gradient (e.g. for a heat-map): onnxruntime computes none.
        """
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError(f"{os.path.basename(self.source)} runs in onnxruntime, which computes no gradients, so "
                               "it gives no heat-map; use the TorchScript model (ckpt_export) for heat-maps.")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        size = self.fixed_batch or len(array)
        outputs = []
        for start in range(0, len(array), size):  # a fixed-batch graph gets chunks of its size, the last zero-padded
            part = array[start: start + size]
            pad = size - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), dtype=part.dtype)])
            outputs.append(self.session.run([self.output_name], {self.input_name: part})[0][: size - pad])
        return torch.from_numpy(np.concatenate(outputs).astype(np.float32, copy=False))


def load_onnx_classifier(
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    image_size: int | Sequence[int] | None = None,
    activation: str = "auto",
) -> ExportedClassifier:
    """An :class:`~monai_moco.deploy.model.ExportedClassifier` on an ONNX file (see the module docstring for where the
    class names and input size come from).

    Args:
        path: the ``.onnx`` file.
        class_names: class names (default: an embedded ``metadata.json``'s ``channel_def`` or config ``class_names``,
            then ``class_0..``).
        image_size: input size (default: the graph's static ``H x W``, then the embedded metadata, then 224).
        activation: ``"auto"``, ``"softmax"`` or ``"sigmoid"`` (as :meth:`ExportedClassifier.load`).

    Returns:
        the classifier (``model`` is an :class:`OnnxRuntimeModule`).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ImportError: when onnxruntime is not installed.
        ValueError: when the file is not a loadable single-input ONNX model, embedded metadata is not JSON, or the
            class names do not match the logits.

    Example::

        clf = load_onnx_classifier("model.onnx", class_names=["normal", "pneumonia"])
        clf.probabilities(torch.rand(1, *clf.image_size))  # {"normal": ..., "pneumonia": ...}
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist.")
    module = OnnxRuntimeModule(path)
    docs: dict[str, Any] = {}
    for key in ("metadata.json", *_CONFIG_FILES):
        text = module.metadata_props.get(key)
        if text:
            try:
                docs[key] = json.loads(text)
            except ValueError:
                raise ValueError(f"{path!r}: ONNX metadata_props[{key!r}] is not valid JSON.") from None
    meta = docs.pop("metadata.json", {})
    if image_size is None:
        image_size = module.input_size
    return ExportedClassifier.from_module(module, meta, docs, class_names, image_size, activation, source=path)
