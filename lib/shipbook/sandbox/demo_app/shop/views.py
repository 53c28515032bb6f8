"""JSON views of the catalogue."""

from django.db.models import Count
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from shop.models import Category, Product


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    """What this service offers."""
    return JsonResponse(
        {"service": "demo-shop", "endpoints": ["/products/", "/categories/", "/health/", "/version/"]}
    )


@require_GET
def product_list(request: HttpRequest) -> JsonResponse:
    """Products ordered by SKU, optionally of one category (`?category=<slug>`)."""
    queryset = Product.objects.select_related("category")
    category = request.GET.get("category")
    if category:
        queryset = queryset.filter(category__slug=category)
    products = [product.as_dict() for product in queryset]
    return JsonResponse({"count": len(products), "products": products})


@require_GET
def product_detail(request: HttpRequest, product_id: int) -> JsonResponse:
    """One product, or 404."""
    product = get_object_or_404(Product.objects.select_related("category"), pk=product_id)
    return JsonResponse(product.as_dict())


@require_GET
def category_list(request: HttpRequest) -> JsonResponse:
    """All categories with the number of products in each."""
    queryset = Category.objects.annotate(product_count=Count("products"))
    categories = [{**category.as_dict(), "products": category.product_count} for category in queryset]
    return JsonResponse({"count": len(categories), "categories": categories})
