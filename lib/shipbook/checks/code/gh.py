"""The GitHub client of the code checks (the environment's, unless a test hands one in) and every page of a list."""

from __future__ import annotations

from typing import Any

from shipbook.config import Environment
from shipbook.github import GitHub

AUTO: Any = object()  # "build the GitHub client from the environment"


def client(env: Environment, given: Any) -> GitHub | None:
    """`given`, or the environment's client when it is AUTO; None when GitHub is not configured."""
    return GitHub.from_env(env) if given is AUTO else given


def pages(gh: GitHub, path: str, key: str = "", per_page: int = 100, limit: int = 20) -> list[dict]:
    """Every item of a paginated GitHub list (`key`: the list inside an object answer)."""
    items: list[dict] = []
    for page in range(1, limit + 1):
        data = gh.get(path, per_page=per_page, page=page)
        chunk = (data.get(key) or []) if key and isinstance(data, dict) else data if isinstance(data, list) else []
        items += chunk
        if len(chunk) < per_page:
            break
    return items
