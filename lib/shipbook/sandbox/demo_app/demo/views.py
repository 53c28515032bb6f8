"""Operations endpoints: the load balancer's health check and the served version."""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def app_version() -> str:
    """The version being served: APP_VERSION (set at deploy from the image tag), else the VERSION file."""
    version = os.environ.get("APP_VERSION", "")
    if version:
        return version
    version_file = settings.BASE_DIR / "VERSION"
    return version_file.read_text(encoding="utf-8").strip() if version_file.exists() else "unknown"


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise, with the query time."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        return JsonResponse({"status": "error", "database": type(error).__name__}, status=503)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    return JsonResponse({"status": "ok", "database": "ok", "database_ms": elapsed_ms})


@require_GET
def version(request: HttpRequest) -> JsonResponse:
    """The served version and the commit it was built from."""
    return JsonResponse({"version": app_version(), "commit": os.environ.get("GIT_COMMIT", "")})
