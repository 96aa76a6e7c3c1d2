"""Imported from a bundle config so that a failed ``python -m monai.bundle run`` ends with one ``ERROR:`` line.

Every bundle under ``bundles/`` lists it first in ``imports``::

    "imports": ["$import monai_moco.utils.bundle_error_line", "$import os", ...]

MONAI evaluates the import statements of a config before any other expression, so the hook is in place before the
config is parsed; importing this module calls :func:`~monai_moco.utils.error_line.install_error_line_hook` in a
``python -m monai.bundle`` process only (idempotent), and does nothing in any other program. ``import monai_moco`` never
imports it.
"""

from __future__ import annotations

from monai_moco.utils.error_line import install_error_line_hook, is_bundle_cli

if is_bundle_cli():
    install_error_line_hook()
