"""The core library never imports the deploy package or the MONAI Deploy SDK (it installs and imports without them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = ("monai_moco.deploy", "monai.deploy", "holoscan", "highdicom")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_no_core_module_imports_deploy_or_the_sdk():
    core = [p for p in (REPO / "monai_moco").rglob("*.py") if "deploy" not in p.relative_to(REPO / "monai_moco").parts]
    assert len(core) > 30
    bad = [f"{p.relative_to(REPO)}: {name}" for p in core for name in _imports(p) if name.startswith(OPTIONAL)]
    assert not bad, "core modules importing optional deploy dependencies:\n" + "\n".join(bad)


def test_importing_every_core_module_leaves_deploy_unloaded():
    # module names from the files (pkgutil.walk_packages would import monai_moco.deploy itself to descend into it)
    names = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "monai_moco").rglob("*.py")
        if "deploy" not in p.parts
    )
    code = (
        "import importlib, sys\n"
        f"mods = {names!r}\n"
        "[importlib.import_module(m) for m in mods]\n"
        "print(len(mods), 'monai_moco.deploy' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, deploy_loaded = proc.stdout.split()[-2:]
    # (with the SDK installed, `import monai` itself loads monai.deploy, holoscan and highdicom: MONAI imports every
    # submodule of its namespace; monai_moco adds nothing to that)
    assert int(count) > 30 and deploy_loaded == "False"
