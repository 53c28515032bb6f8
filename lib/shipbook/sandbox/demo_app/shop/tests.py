"""Tests of the catalogue API."""

from django.test import TestCase

from shop.models import Category, Product


class ProductApiTests(TestCase):
    def test_seeded_catalogue_is_listed(self) -> None:
        response = self.client.get("/products/")
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["count"], Product.objects.count())
        self.assertGreaterEqual(body["count"], 20)

    def test_detail(self) -> None:
        product = Product.objects.get(sku="BK-001")
        response = self.client.get(f"/products/{product.pk}/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["sku"], "BK-001")
        self.assertEqual(response.json()["category"], "books")

    def test_detail_missing(self) -> None:
        self.assertEqual(self.client.get("/products/999999/").status_code, 404)

    def test_index(self) -> None:
        self.assertEqual(self.client.get("/").json()["service"], "demo-shop")

    def test_post_not_allowed(self) -> None:
        self.assertEqual(self.client.post("/products/").status_code, 405)


class CategoryTests(TestCase):
    def test_every_seeded_product_has_a_category(self) -> None:
        self.assertFalse(Product.objects.filter(category__isnull=True).exists())

    def test_filter_by_category(self) -> None:
        response = self.client.get("/products/", {"category": "games"})
        skus = [product["sku"] for product in response.json()["products"]]
        self.assertTrue(skus)
        self.assertTrue(all(sku.startswith("GM-") for sku in skus))

    def test_category_list_counts_products(self) -> None:
        body = self.client.get("/categories/").json()
        self.assertEqual(body["count"], Category.objects.count())
        self.assertEqual(sum(c["products"] for c in body["categories"]), Product.objects.count())

    def test_list_and_detail_read_the_category_in_one_query(self) -> None:
        product = Product.objects.get(sku="GM-001")
        with self.assertNumQueries(1):
            listed = self.client.get("/products/").json()["products"]
        with self.assertNumQueries(1):
            shown = Product.objects.with_category_slug(product.pk).as_dict()
        self.assertEqual(shown["category"], "games")
        self.assertLessEqual(shown.items(), self.client.get(f"/products/{product.pk}/").json().items())
        self.assertEqual(next(p for p in listed if p["id"] == product.pk), shown)
        self.assertTrue(all(p["category"] for p in listed))
        self.assertIsNone(Product.objects.with_category_slug(999999))
