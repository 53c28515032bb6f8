"""The GitHub client of the code checks: the environment's, unless a test hands one in."""

from __future__ import annotations

from typing import Any

from shipbook.config import Environment
from shipbook.github import GitHub

AUTO: Any = object()  # "build the GitHub client from the environment"


def client(env: Environment, given: Any) -> GitHub | None:
    """`given`, or the environment's client when it is AUTO; None when GitHub is not configured."""
    return GitHub.from_env(env) if given is AUTO else given
