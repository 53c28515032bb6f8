"""Tests of the operations endpoints and the DATABASE_URL parser."""

import os
from unittest import mock

from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, TestCase

from demo.dburl import parse_database_url


class DatabaseUrlTests(SimpleTestCase):
    def test_sqlite_absolute_path(self) -> None:
        config = parse_database_url("sqlite:////var/lib/app/db.sqlite3")
        self.assertEqual(config["ENGINE"], "django.db.backends.sqlite3")
        self.assertEqual(config["NAME"], "/var/lib/app/db.sqlite3")

    def test_sqlite_memory(self) -> None:
        self.assertEqual(parse_database_url("sqlite://:memory:")["NAME"], ":memory:")

    def test_postgres(self) -> None:
        config = parse_database_url("postgres://app:p%40ss@db.internal:5432/shop?sslmode=require")
        self.assertEqual(config["ENGINE"], "django.db.backends.postgresql")
        self.assertEqual(config["USER"], "app")
        self.assertEqual(config["PASSWORD"], "p@ss")
        self.assertEqual(config["HOST"], "db.internal")
        self.assertEqual(config["PORT"], "5432")
        self.assertEqual(config["NAME"], "shop")
        self.assertEqual(config["OPTIONS"], {"sslmode": "require"})

    def test_unsupported_scheme(self) -> None:
        with self.assertRaises(ImproperlyConfigured):
            parse_database_url("mysql://app@db/shop")


class OperationsEndpointTests(TestCase):
    def test_health(self) -> None:
        response = self.client.get("/health/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "ok")

    def test_version_from_environment(self) -> None:
        with mock.patch.dict(os.environ, {"APP_VERSION": "v9.9.9"}):
            response = self.client.get("/version/")
        self.assertEqual(response.json()["version"], "v9.9.9")

    def test_version_from_file(self) -> None:
        response = self.client.get("/version/")
        self.assertEqual(response.status_code, 200)
        self.assertRegex(response.json()["version"], r"^\d+\.\d+\.\d+$")
