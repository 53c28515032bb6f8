"""JSON views of the catalogue."""

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from shop.models import Product


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    """What this service offers."""
    return JsonResponse({"service": "demo-shop", "endpoints": ["/products/", "/health/", "/version/"]})


@require_GET
def product_list(request: HttpRequest) -> JsonResponse:
    """All products, ordered by SKU."""
    products = [product.as_dict() for product in Product.objects.all()]
    return JsonResponse({"count": len(products), "products": products})


@require_GET
def product_detail(request: HttpRequest, product_id: int) -> JsonResponse:
    """One product, or 404."""
    product = get_object_or_404(Product, pk=product_id)
    return JsonResponse(product.as_dict())
