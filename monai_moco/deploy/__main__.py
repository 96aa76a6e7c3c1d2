"""``python -m monai_moco.deploy -i <dicom_dir> -o <out_dir> -m <model.ts>``: run the MONAI Deploy application.

Defaults for ``-i``/``-o``/``-m`` come from the MONAI Deploy / Holoscan environment variables
(``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH``, ``HOLOSCAN_MODEL_PATH``) that a packaged MAP sets. The output folder is created and
checked for writing before any image is read. A run report (JSON: processed images with their files, skipped files
with the stage and the reason; paths relative to the input folder unless ``--include-patient-info``) goes to stderr
and to ``<out_dir>/report.json``. Exit status: 0 when at least one image was processed, 2 when none could be (only
``report.json`` is written then), 1 for a bad input, output or model path or bad arguments (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from monai_moco.utils.io import atomic_write, json_writer

EXIT_OK, EXIT_ERROR, EXIT_NOTHING_PROCESSED = 0, 1, 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        the namespace.
    """
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m monai_moco.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", type=Path, default=env.get("HOLOSCAN_INPUT_PATH"),
                        help="DICOM folder (default $HOLOSCAN_INPUT_PATH)")
    parser.add_argument("-o", "--output", type=Path, default=env.get("HOLOSCAN_OUTPUT_PATH"),
                        help="output folder (default $HOLOSCAN_OUTPUT_PATH)")
    parser.add_argument("-m", "--model", type=Path, default=env.get("HOLOSCAN_MODEL_PATH"),
                        help="TorchScript model file, or a folder holding exactly one *.ts (default $HOLOSCAN_MODEL_PATH)")
    parser.add_argument("--class-names", nargs="+", default=None, help="override the embedded class names")
    parser.add_argument("--image-size", type=int, nargs="+", default=None, help="override the embedded input size")
    parser.add_argument("--activation", default="auto", choices=("auto", "softmax", "sigmoid"))
    parser.add_argument("--no-sr", action="store_true", help="do not write the DICOM SR")
    parser.add_argument("--no-heatmap", action="store_true", help="do not write the heat-map PNG")
    parser.add_argument("--include-patient-info", action="store_true",
                        help="copy PatientName/PatientID/PatientBirthDate into the JSON (off by default)")
    args = parser.parse_args(argv)
    for name in ("input", "output", "model"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required (or set HOLOSCAN_{name.upper()}_PATH)")
    return args


def _model_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.ts")) + sorted(path.glob("*/*.ts"))
        if len(found) != 1:
            raise ValueError(f"model folder {str(path)!r} must hold exactly one *.ts file, found {len(found)}.")
        return found[0]
    return path


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` and prove it writable (a temporary file is created and removed), before any inference.

    Args:
        folder: the output folder.

    Raises:
        OSError: naming ``folder`` when it cannot be created (e.g. a path under a regular file) or written
            (a read-only mount, no permission).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test_"):
            pass
    except OSError as err:
        raise OSError(f"output folder {str(folder)!r} cannot be created or written ({type(err).__name__}: "
                      f"{err.strerror or err}); expected a writable folder.") from err


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app.

    Args:
        argv: command-line arguments.

    Returns:
        the exit status (see the module docstring).
    """
    args = parse_args(argv)
    try:
        from monai_moco.deploy.app import ChestXRayClassifierApp
    except ImportError as err:
        print(f"monai_moco.deploy needs the MONAI Deploy App SDK: pip install 'monai_moco[deploy]' ({err}).",
              file=sys.stderr)
        return EXIT_ERROR
    from monai_moco.deploy.model import ExportedClassifier
    from monai_moco.deploy.pipeline import DeployOptions

    if not args.input.exists():
        print(f"input {str(args.input)!r} does not exist.", file=sys.stderr)
        return EXIT_ERROR
    try:
        size = None if args.image_size is None else (args.image_size * 2)[:2]
        classifier = ExportedClassifier.load(_model_file(args.model), args.class_names, size, args.activation)
    except (OSError, ValueError) as err:
        print(f"cannot load the model: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        check_output_folder(args.output)
    except OSError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return EXIT_ERROR
    options = DeployOptions(write_sr=not args.no_sr, write_heatmap=not args.no_heatmap,
                            include_patient_info=args.include_patient_info)
    app = ChestXRayClassifierApp(args.input, args.output, classifier, options)
    app.run()
    report = app.report
    if report is None:
        print("the classifier operator did not run (see the Holoscan log above).", file=sys.stderr)
        return EXIT_ERROR
    summary = report.as_dict(args.input, full_paths=args.include_patient_info)
    print(json.dumps(summary, indent=2), file=sys.stderr)
    atomic_write(args.output / "report.json", json_writer(summary))
    if not report.processed:
        print(f"no chest radiograph could be processed in {str(args.input)!r}; only report.json was written.",
              file=sys.stderr)
        return EXIT_NOTHING_PROCESSED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
