"""Seed the catalogue with the launch products (reversible: removes exactly those SKUs)."""

from decimal import Decimal

from django.db import migrations

PRODUCTS = [
    ("BK-001", "The Pragmatic Shopper", "24.00"),
    ("BK-002", "Release Engineering in Practice", "39.50"),
    ("BK-003", "A Field Guide to Databases", "31.00"),
    ("BK-004", "Notebooks for Operators", "18.75"),
    ("GM-001", "Cloud Tycoon (board game)", "45.00"),
    ("GM-002", "Rollback! (card game)", "15.00"),
    ("GM-003", "Pager Duty Bingo", "9.99"),
    ("TL-001", "Cable Tester", "22.40"),
    ("TL-002", "Label Maker", "34.90"),
    ("TL-003", "Screwdriver Set", "27.00"),
    ("TL-004", "Rack Shelf", "58.00"),
    ("AP-001-S", "Shipbook T-shirt (S)", "20.00"),
    ("AP-001-M", "Shipbook T-shirt (M)", "20.00"),
    ("AP-001-L", "Shipbook T-shirt (L)", "20.00"),
    ("AP-002-M", "On-call Hoodie (M)", "48.00"),
    ("AP-002-L", "On-call Hoodie (L)", "48.00"),
    ("MG-001", "Ship It Mug", "12.00"),
    ("MG-002", "Green Build Mug", "12.00"),
    ("ST-001", "Sticker Pack", "5.00"),
    ("ST-002", "Laptop Sticker: It Works Locally", "3.50"),
]


def add_products(apps, schema_editor):
    product = apps.get_model("shop", "Product")
    product.objects.bulk_create(
        [product(sku=sku, name=name, price=Decimal(price)) for sku, name, price in PRODUCTS]
    )


def remove_products(apps, schema_editor):
    product = apps.get_model("shop", "Product")
    product.objects.filter(sku__in=[sku for sku, _, _ in PRODUCTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.RunPython(add_products, remove_products)]
