"""The catalogue: products with a stock keeping unit and a price."""

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    def as_dict(self) -> dict[str, object]:
        return {"id": self.pk, "sku": self.sku, "name": self.name, "price": str(self.price)}
