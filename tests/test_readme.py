"""The README is code: its Python blocks run as written and print what their comments say; its commands exist.

Each fenced ``python`` block of README.md runs in order, in one namespace, from the repository root (where the
README's relative paths point). A ``print(...)  # text`` line promises ``text`` (up to an optional ``<-`` remark) in
the printed output.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(README.read_text()) if lang == language]


def _promises(code: str) -> list[str]:
    """Expected output fragments from ``print(...)  # expected`` lines, and from comment lines right after them."""
    promised = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        if "  # " in line:
            promised.append(line.split("  # ", 1)[1])
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if nxt.startswith("# ") and "<-" in nxt:
            promised.append(nxt[2:])
    return [p.split("<-", 1)[0].strip() for p in promised]


def test_readme_has_the_two_commands_ci_runs():
    text = README.read_text()
    bash = "\n".join(_blocks("bash"))
    assert "./scripts/setup.sh" in bash and ".venv/bin/python -m pytest" in bash
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "./scripts/setup.sh" in ci and ".venv/bin/python -m pytest" in ci, "CI must run the README's commands"
    for script in re.findall(r"(scripts/[\w./-]+\.(?:py|sh))", text):
        assert (REPO_ROOT / script).is_file(), f"README names {script}, which does not exist"
    for bundle in set(re.findall(r"bundles/([\w-]+)/", text)):
        assert (REPO_ROOT / "bundles" / bundle).is_dir(), f"README names bundles/{bundle}/, which does not exist"


def test_readme_python_blocks_run_and_print_what_they_promise(shared_data: Path, monkeypatch):
    if not (REPO_ROOT / "data" / "kermany" / "train").is_dir():
        pytest.skip("data/kermany is not linked (run ./scripts/setup.sh beside ../shared)")
    blocks = _blocks("python")
    assert len(blocks) >= 3, "the README quick start lost its examples"
    monkeypatch.chdir(REPO_ROOT)
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README is our own code
    printed = out.getvalue()
    for promise in (p for block in blocks for p in _promises(block)):
        assert promise in printed, f"README promises {promise!r}; the code printed:\n{printed}"


def test_readme_is_a_short_guide():
    """The README is a user's guide of at most 15,000 characters; results and history live in docs/."""
    n = len(README.read_text())
    assert n <= 15000, f"README.md has {n} characters; move detail to docs/ (limit 15,000)"
