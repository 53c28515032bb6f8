"""Tests of the catalogue API."""

from django.test import TestCase

from shop.models import Product


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

    def test_detail_missing(self) -> None:
        self.assertEqual(self.client.get("/products/999999/").status_code, 404)

    def test_index(self) -> None:
        self.assertEqual(self.client.get("/").json()["service"], "demo-shop")

    def test_post_not_allowed(self) -> None:
        self.assertEqual(self.client.post("/products/").status_code, 405)
