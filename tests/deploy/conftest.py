"""Puts this folder on ``sys.path`` once so the deploy tests can ``from deploy_helpers import ...``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
