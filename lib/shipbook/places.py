"""Where a command works: the runs root, the sandbox's directory and the environment files.

Read from the process environment when asked (`SHIPBOOK_RUNS_DIR`, `SHIPBOOK_SANDBOX_DIR`,
`SHIPBOOK_ENV_DIR`, else the checkout's `runs/`, `.sandbox/` and `environments/`), never frozen
at import: a test, a second checkout or a kernel started with other variables sees its own places
without patching module attributes. The runner hands the same variables to its kernels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROJECT_ROOT", "Places", "env_dir", "runs_root", "sandbox_dir"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Places:
    runs_root: Path
    sandbox_dir: Path
    env_dir: Path

    @classmethod
    def current(cls, environ: Mapping[str, str] | None = None) -> Places:
        e = os.environ if environ is None else environ

        def place(var: str, default: str) -> Path:
            return Path(e.get(var) or PROJECT_ROOT / default).resolve()

        return cls(place("SHIPBOOK_RUNS_DIR", "runs"), place("SHIPBOOK_SANDBOX_DIR", ".sandbox"),
                   place("SHIPBOOK_ENV_DIR", "environments"))


def runs_root() -> Path:
    return Places.current().runs_root


def sandbox_dir() -> Path:
    return Places.current().sandbox_dir


def env_dir() -> Path:
    return Places.current().env_dir
