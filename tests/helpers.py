"""Helpers for tests that drive the installed `recon` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_recon(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """Run the installed `recon` command; returns (exit status, stdout, stderr)."""
    recon = Path(sys.executable).with_name("recon")
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [str(recon), *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout, done.stderr
