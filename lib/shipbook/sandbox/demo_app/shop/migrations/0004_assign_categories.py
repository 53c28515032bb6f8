"""Create the launch categories and file every product under one by its SKU prefix.

Reversible: the reverse clears the products' category and deletes the categories it created.
"""

from django.db import migrations

CATEGORIES = {
    "AP": ("Apparel", "apparel"),
    "BK": ("Books", "books"),
    "GM": ("Games", "games"),
    "MG": ("Mugs", "mugs"),
    "ST": ("Stickers", "stickers"),
    "TL": ("Tools", "tools"),
}


def assign_categories(apps, schema_editor):
    category_model = apps.get_model("shop", "Category")
    product_model = apps.get_model("shop", "Product")
    for prefix, (name, slug) in CATEGORIES.items():
        category, _ = category_model.objects.get_or_create(slug=slug, defaults={"name": name})
        product_model.objects.filter(sku__startswith=f"{prefix}-", category__isnull=True).update(
            category=category
        )


def unassign_categories(apps, schema_editor):
    category_model = apps.get_model("shop", "Category")
    product_model = apps.get_model("shop", "Product")
    slugs = [slug for _, slug in CATEGORIES.values()]
    product_model.objects.filter(category__slug__in=slugs).update(category=None)
    category_model.objects.filter(slug__in=slugs).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0003_category")]

    operations = [migrations.RunPython(assign_categories, unassign_categories)]
