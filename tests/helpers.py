"""Helpers for tests that drive the installed `recon` command as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def stop_process_group(proc: subprocess.Popen) -> None:
    """Ctrl-C to the whole process group, then SIGKILL to whatever is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    # code servers and run workers can outlive `dagster dev`; wait for them, then kill them
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
