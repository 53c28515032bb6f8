"""JSON views of the catalogue."""

from django.db.models import Count
from django.http import Http404, HttpRequest, JsonResponse
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
    queryset = Product.objects.all()
    category = request.GET.get("category")
    if category:
        queryset = queryset.filter(category__slug=category)
    products = queryset.api_rows()
    return JsonResponse({"count": len(products), "products": products})


@require_GET
def product_detail(request: HttpRequest, product_id: int) -> JsonResponse:
    """One product, or 404."""
    product = Product.objects.with_category_slug(product_id)
    if product is None:
        raise Http404("No product matches the given query.")
    return JsonResponse(product.as_dict())


@require_GET
def category_list(request: HttpRequest) -> JsonResponse:
    """All categories with the number of products in each."""
    queryset = Category.objects.annotate(product_count=Count("products"))
    categories = [{**category.as_dict(), "products": category.product_count} for category in queryset]
    return JsonResponse({"count": len(categories), "categories": categories})
