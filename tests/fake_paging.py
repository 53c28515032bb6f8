"""boto3's real paginator over a fake client's method: fakes page the way AWS does (each API's own token names,
from botocore's paginator models), so code that reads through `shipbook.aws.pages` runs against them unchanged."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.paginate import Paginator


@functools.lru_cache(maxsize=32)
def _models(service: str) -> tuple[Any, dict[str, str], dict[str, Any]]:
    session = botocore.session.get_session()
    model = session.get_service_model(service)
    config = session.get_component("data_loader").load_service_model(service, "paginators-1")["pagination"]
    return model, {xform_name(name): name for name in model.operation_names}, config


def paginator(service: str, operation: str, method: Callable[..., dict]) -> Paginator:
    """A botocore Paginator for `operation` (snake_case) that calls `method(**params)` for each page."""
    model, names, config = _models(service)
    name = names[operation]
    return Paginator(method, config[name], model.operation_model(name))
