"""Where a run came from: the git revision of the code and the package version."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import hjepa


@lru_cache(maxsize=1)
def git_revision() -> str:
    """The commit of the hjepa source tree (with ``-dirty`` when it has local changes), or ``unknown``."""
    root = Path(hjepa.__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """Plain values stored beside every checkpoint."""
    return {"git_revision": git_revision(), "hjepa_version": hjepa.__version__}
