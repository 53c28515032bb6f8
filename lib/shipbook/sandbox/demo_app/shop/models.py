"""The catalogue: products with a stock keeping unit and a price, grouped in categories."""

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


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "sku": self.sku,
            "name": self.name,
            "price": str(self.price),
            "category": self.category.slug if self.category else None,
        }
