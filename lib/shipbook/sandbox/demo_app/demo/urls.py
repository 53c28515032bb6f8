"""URL routes: operations endpoints and the shop API."""

from django.urls import include, path

from demo import views

urlpatterns = [
    path("health/", views.health, name="health"),
    path("version/", views.version, name="version"),
    path("", include("shop.urls")),
]
