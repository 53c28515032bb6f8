"""Operations endpoints: the load balancer's health check and the served version."""

from __future__ import annotations

import os

from django.conf import settings
from django.db import connection
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
    """200 when the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return JsonResponse({"status": "ok"})


@require_GET
def version(request: HttpRequest) -> JsonResponse:
    """The served version and the commit it was built from."""
    return JsonResponse({"version": app_version(), "commit": os.environ.get("GIT_COMMIT", "")})
