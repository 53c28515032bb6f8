"""Routes of the shop API."""

from django.urls import path

from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("products/", views.product_list, name="product-list"),
    path("products/<int:product_id>/", views.product_detail, name="product-detail"),
    path("categories/", views.category_list, name="category-list"),
]
