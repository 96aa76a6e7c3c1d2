"""MLflow tracking of a bundle run: MONAI's ``MLFlowHandler`` plus the parameters, metrics and files of our bundles.

``python -m monai.bundle run ... --tracking mlflow`` (MONAI 1.6) appends a ``MLFlowHandler`` to ``train#handlers`` and
``validate#handlers``: it logs the training loss, ``engine.state.metrics`` per epoch and ``max_epochs`` into a SQLite
store under ``output_dir``, in an experiment called ``monai_experiment``. It misses what our bundles produce: the
contrastive engines' statistics (``acc1``, ``queue_fill``, ... are not the ``loss`` it reads), the test metrics of
``evaluate.json`` (its evaluator is ``evaluate#evaluator``, and ``ClassificationReport`` writes a JSON file, not
``engine.state.metrics``), the bundle's parameters and the checkpoint; and for a plain-string ``output_dir`` (every
bundle here) it hands the handler a broken path to the executed config (``"<dir> + '/config_<time>.json'"``), so
that file is never logged either.

``--tracking bundles/mlflow_tracking.json`` (MONAI reads a settings file given to ``--tracking``) puts a
:class:`BundleMLFlowHandler` on the trainer, the validator and the test evaluator instead. Requires ``mlflow`` (the
full package: ``mlflow-skinny`` has no SQLite store); extra ``mlflow``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ignite.engine import Engine
from monai.handlers import MLFlowHandler

from .stats import contrastive_output_transform

__all__ = ["BundleMLFlowHandler", "config_params", "executed_config_path", "report_metrics", "tracking_output_transform"]

#: how MONAI's ``patch_bundle_tracking`` builds ``save_execute_config`` when ``output_dir`` is a plain string.
_MONAI_EXECUTED_CONFIG = re.compile(r"(?P<folder>.*) \+ '(?P<name>/config_\d{8}_\d{6}\.json)'")
#: characters MLflow accepts in metric and parameter names.
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")
#: executed-config entries that are tracking plumbing, not parameters of the run.
_NOT_PARAMS = frozenset({"save_execute_config"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_literal(value: Any) -> bool:
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    return isinstance(value, (bool, int, float))


def executed_config_path(value: str | None) -> str | None:
    """The file MONAI's ``--tracking`` wrote the executed config to, from the ``save_execute_config`` it set.

    MONAI builds that id as ``<raw output_dir> + " + '/config_<time>.json'"``: a valid expression when ``output_dir``
    is one, but for a plain-string ``output_dir`` the parsed value is the literal text ``"runs/x + '/config_...json'"``.
    This undoes that concatenation; any other value is returned unchanged.

    Args:
        value: the parsed ``@save_execute_config`` (``None`` when MONAI saved no config).

    Returns:
        the file path, or ``None``.

    Example::

        executed_config_path("runs/moco + '/config_20261204_152201.json'")  # "runs/moco/config_20261204_152201.json"
    """
    if not value or not isinstance(value, str):
        return None
    match = _MONAI_EXECUTED_CONFIG.fullmatch(value)
    return match["folder"] + match["name"] if match else value


def config_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The run parameters of a bundle config: its top-level ids whose values are literals.

    Numbers, booleans and strings that are not ``$`` expressions, ``@`` references or ``%`` macros are kept (as
    MLflow stores them, ``str(value)``), and lists of such values (JSON). Expressions, components and tracking
    plumbing are left out: their text is in the executed config, which the handler logs as a file.

    Args:
        config: the executed bundle config (train.json with its overlays and command-line overrides merged).

    Returns:
        ``{id: value}``.

    Example::

        config_params({"epochs": 3, "lr": "$@base_lr * 2", "crop_scale": [0.5, 1.0]})
        # {"epochs": "3", "crop_scale": "[0.5, 1.0]"}
    """
    params: dict[str, str] = {}
    for key, value in config.items():
        if key in _NOT_PARAMS or key.startswith("_"):
            continue
        if _is_literal(value):
            params[_NAME_UNSAFE.sub("_", key)] = str(value)
        elif isinstance(value, list) and value and all(_is_literal(v) for v in value):
            params[_NAME_UNSAFE.sub("_", key)] = json.dumps(value)
    return params


def report_metrics(report: Mapping[str, Any], prefix: str = "test_") -> dict[str, float]:
    """The metrics of a report such as ``evaluate.json``'s ``test_metrics.json``, flat for MLflow.

    Every mapping with a numeric ``"value"`` (at any depth) is a metric named ``prefix`` + its path joined by ``_``;
    its ``ci_low``/``ci_high``, when numeric, follow as ``<name>_ci_low``/``<name>_ci_high``. Other entries (counts,
    settings, file names) are not metrics.

    Args:
        report: the parsed JSON report.
        prefix: prepended to every name.

    Returns:
        ``{name: value}``.

    Example::

        report_metrics({"auc": {"value": 0.93, "ci_low": 0.9, "ci_high": 0.95, "n": 624}, "backbone": "resnet18"})
        # {"test_auc": 0.93, "test_auc_ci_low": 0.9, "test_auc_ci_high": 0.95}
    """
    metrics: dict[str, float] = {}

    def visit(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping):
            return
        if _is_number(node.get("value")) and path:
            name = _NAME_UNSAFE.sub("_", prefix + "_".join(path))
            metrics[name] = float(node["value"])
            for bound in ("ci_low", "ci_high"):
                if _is_number(node.get(bound)):
                    metrics[f"{name}_{bound}"] = float(node[bound])
            return
        for key, child in node.items():
            visit(child, (*path, str(key)))

    visit(report, ())
    return metrics


def tracking_output_transform(loss_name: str = "train_loss", prefix: str = "train/") -> Callable[[Any], dict[str, float]]:
    """An ``output_transform`` giving the scalars of one training iteration, under the bundle's TensorBoard tags.

    A contrastive engine's flat dict (``loss``, ``acc1``, ``queue_fill``, ...) gives every numeric scalar entry as
    ``prefix + key`` (:func:`~monai_moco.handlers.contrastive_output_transform`); a ``SupervisedTrainer``'s decollated
    output (a list of dicts with a shared ``loss``) or a bare loss gives ``{loss_name: loss}``.

    Args:
        loss_name: name of the loss of a supervised engine.
        prefix: prefix of a contrastive engine's statistics.

    Returns:
        ``output -> {name: float}``.

    Example::

        tracking_output_transform()({"loss": 5.1, "acc1": 0.2})  # {"train/loss": 5.1, "train/acc1": 0.2}
        tracking_output_transform()([{"loss": torch.tensor(0.7)}])  # {"train_loss": 0.7}
    """
    contrastive = contrastive_output_transform(prefix=prefix)

    def _transform(output: Any) -> dict[str, float]:
        if isinstance(output, Mapping):
            return {k: float(v) for k, v in contrastive(output).items() if not isinstance(v, (str, bytes))}
        if isinstance(output, Sequence):
            output = output[0].get("loss") if output and isinstance(output[0], Mapping) else None
        if output is None:
            return {}
        return {loss_name: float(output.item() if hasattr(output, "item") else output)}

    return _transform


class BundleMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` that also logs a bundle run's parameters, its executed config, a report's metrics and
    only the artifacts that exist.

    On top of ``MLFlowHandler`` (which logs ``output_transform`` per iteration and ``engine.state.metrics`` per epoch):
    when the engine starts, the literal top-level values of the executed config are logged as parameters
    (:func:`config_params`; ones the run already has are skipped, so a resumed run keeps its first values); when it
    completes, the numeric entries of ``report_file`` are logged as metrics (:func:`report_metrics`), then the
    executed config and those ``artifacts`` that exist are logged as files (e.g. the final checkpoint, whose name
    differs between bundles).

    Args:
        executed_config: ``@save_execute_config`` as MONAI's ``--tracking`` sets it (see
            :func:`executed_config_path`); ``None`` logs no parameters and no config file.
        report_file: a JSON report written by a handler that runs before this one at ``COMPLETED`` (e.g.
            ``ClassificationReport``'s ``test_metrics.json``); ``None`` for none.
        report_prefix: prefix of the report's metric names.
        kwargs: ``monai.handlers.MLFlowHandler`` arguments (``tracking_uri``, ``experiment_name``, ``run_name``,
            ``artifacts``, ``iteration_log``, ``output_transform``, ``close_on_complete``, ...).

    Example::

        handler = BundleMLFlowHandler(
            executed_config="runs/moco/config_20261204_152201.json",
            tracking_uri="sqlite:////abs/runs/moco/mlruns.db", experiment_name="moco_vit", run_name="moco",
            output_transform=tracking_output_transform(), artifacts=["runs/moco/checkpoints/last.pt"],
            close_on_complete=True,
        )
        handler.attach(trainer)
    """

    def __init__(
        self,
        executed_config: str | None = None,
        report_file: str | os.PathLike | None = None,
        report_prefix: str = "test_",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.executed_config = executed_config_path(executed_config)
        self.report_file = None if report_file is None else os.fspath(report_file)
        self.report_prefix = report_prefix

    def start(self, engine: Engine) -> None:
        """Start (or pick up) the run as ``MLFlowHandler`` does, then log the executed config's parameters.

        Args:
            engine: the engine that started.

        Raises:
            ValueError: when the executed config is not a JSON object.
        """
        super().start(engine)
        if not self.executed_config or not os.path.isfile(self.executed_config):
            return
        with open(self.executed_config) as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError(f"executed config {self.executed_config!r}: expected a JSON object, got "
                             f"{type(config).__name__}.")
        params = config_params(config)
        self._delete_exist_param_in_dict(params)
        if params:
            self._log_params(params)

    def complete(self) -> None:
        """Log the report's metrics, then the executed config and the existing artifacts.

        Raises:
            ValueError: when ``report_file`` exists but is not a JSON object.
        """
        if self.cur_run is not None and self.report_file and os.path.isfile(self.report_file):
            with open(self.report_file) as f:
                report = json.load(f)
            if not isinstance(report, dict):
                raise ValueError(f"report {self.report_file!r}: expected a JSON object, got {type(report).__name__}.")
            metrics = report_metrics(report, self.report_prefix)
            if metrics:
                self._log_metrics(metrics)
        files = [*self.artifacts, self.executed_config]
        self.artifacts = tuple(dict.fromkeys(os.fspath(p) for p in files if p and os.path.exists(p)))
        super().complete()
