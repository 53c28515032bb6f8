"""Rehearsal scenarios: named faults the sandbox can inject, as data.

A scenario changes the demo app's release commit (an `AppChange`, applied by `repo_builder` as one
more pull request or direct commit before the release commit) and/or the twin (a `TwinAction`,
applied by `apply_twin` through the AWS APIs once the twin is seeded). Release code never sees
the scenario name: it has to find the fault through the same APIs it uses against AWS.

Each scenario names the phase and the check id (see the release checklist) expected to catch it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests

from shipbook.sandbox.loopback import require_loopback

logger = logging.getLogger(__name__)

REGION = "ap-northeast-1"
CLUSTER = "shipbook-demo"
SERVICE = "demo-web"
DUMMY_CREDENTIALS = dict.fromkeys(("aws_access_key_id", "aws_secret_access_key"), "testing")


@dataclass(frozen=True)
class FileEdit:
    """Replace exactly one occurrence of `find` in `path` with `replace`."""

    path: str
    find: str
    replace: str


@dataclass(frozen=True)
class AppChange:
    """One change to the demo app, merged before the release commit.

    `reviewed=True` merges it through an approved pull request; `False` commits it straight to
    `main` without a pull request. `kind` files it under Features/Fixes/Chores in the notes.
    """

    title: str
    author: str
    branch: str
    edits: tuple[FileEdit, ...] = ()
    new_files: tuple[tuple[str, str], ...] = ()
    reviewed: bool = True
    kind: str = "Features"
    body: str = ""


@dataclass(frozen=True)
class TwinAction:
    """A change to the AWS twin: an EC2 ingress rule or a fault flag of the control API."""

    open_port: int | None = None
    faults: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    phase: str | None
    check: str | None
    app: AppChange | None = None
    twin: TwinAction | None = None

    @property
    def side(self) -> str:
        """Where the fault lives: app, twin, both or none."""
        if self.app and self.twin:
            return "app+twin"
        if self.app:
            return "app"
        if self.twin:
            return "twin"
        return "none"


_WARMUP_MODULE = '''"""Warm the catalogue at process start so the first requests do not pay for it."""

import logging
import os

from shop.models import Product

logger = logging.getLogger(__name__)


def warm_caches() -> None:
    """Load the first WARMUP_BATCH products (default: all of them) into memory."""
    batch = int(os.environ.get("WARMUP_BATCH", "all"))
    products = list(Product.objects.all()[:batch])
    logger.info("warmed %d products", len(products))
'''

_IRREVERSIBLE_MIGRATION = '''"""Normalise SKUs: upper case, dashes instead of underscores."""

from django.db import migrations


def normalise_skus(apps, schema_editor):
    product_model = apps.get_model("shop", "Product")
    for product in product_model.objects.all():
        product.sku = product.sku.upper().replace("_", "-")
        product.save(update_fields=["sku"])


class Migration(migrations.Migration):
    dependencies = [("shop", "0004_assign_categories")]

    operations = [migrations.RunPython(normalise_skus)]
'''

_TASKDEF = "infra/taskdef.json"
_ALLOWED_HOSTS_ENTRY = """        {
          "name": "ALLOWED_HOSTS",
          "value": "demo.example.com,localhost,127.0.0.1"
        },
"""
_SK_REFERENCE = """        {
          "name": "SECRET_KEY",
          "valueFrom": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:shipbook-demo/SECRET_KEY"
        },
"""
_SK_PLAINTEXT = """        {
          "name": "SECRET_KEY",
          "value": "django-insecure-7f3a9c1e5b2d48a6b0c4e8f1d2a3b4c5e6f708192a3b4c5d"
        },
"""

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "The release as it should be: every check passes and v1.0.0 goes live.",
            None,
            None,
        ),
        Scenario(
            "latency-regression",
            "Product pages call a slow synchronous recommender: p95 latency jumps by ~250 ms.",
            "verify",
            "verify.performance",
            app=AppChange(
                title="feat(shop): related products on the product pages",
                author="dave",
                branch="feat/related-products",
                edits=(
                    FileEdit(
                        "shop/views.py",
                        '"""JSON views of the catalogue."""\n',
                        '"""JSON views of the catalogue."""\n\nimport time\n',
                    ),
                    FileEdit(
                        "shop/views.py",
                        "\n\n@require_GET\ndef product_list(",
                        "\n\nRECOMMENDER_TIMEOUT_S = 0.25\n\n\n"
                        "def related_products(product: Product) -> list[int]:\n"
                        '    """Related products from the recommender (a synchronous call)."""\n'
                        "    time.sleep(RECOMMENDER_TIMEOUT_S)\n"
                        "    related = Product.objects.filter(category=product.category).exclude(pk=product.pk)\n"
                        '    return list(related.values_list("pk", flat=True)[:3])\n'
                        "\n\n@require_GET\ndef product_list(",
                    ),
                    FileEdit(
                        "shop/views.py",
                        "    return JsonResponse(product.as_dict())\n",
                        '    related = related_products(product)\n'
                        '    return JsonResponse({**product.as_dict(), "related": related})\n',
                    ),
                ),
            ),
        ),
        Scenario(
            "error-spike",
            "Product detail reads a size table that lacks 'L': those pages answer 500 (~5% of traffic).",
            "verify",
            "verify.performance",
            app=AppChange(
                title="feat(shop): show the size of apparel products",
                author="dave",
                branch="feat/apparel-size",
                edits=(
                    FileEdit(
                        "shop/views.py",
                        "\n\n@require_GET\ndef product_list(",
                        '\n\nSIZES = {"S": "small", "M": "medium"}\n\n\n@require_GET\ndef product_list(',
                    ),
                    FileEdit(
                        "shop/views.py",
                        "    return JsonResponse(product.as_dict())\n",
                        "    body = product.as_dict()\n"
                        '    if product.sku.startswith("AP-"):\n'
                        '        body["size"] = SIZES[product.sku.rsplit("-", 1)[1]]\n'
                        "    return JsonResponse(body)\n",
                    ),
                ),
            ),
        ),
        Scenario(
            "crash-on-start",
            "A cache warm-up at import parses WARMUP_BATCH='all' as an int: the new tasks exit at start.",
            "deploy",
            "deploy.ecs",
            app=AppChange(
                title="perf: warm the catalogue when the server starts",
                author="erin",
                branch="perf/warmup",
                kind="Features",
                new_files=(("shop/warmup.py", _WARMUP_MODULE),),
                edits=(
                    FileEdit(
                        "demo/wsgi.py",
                        "application = get_wsgi_application()\n",
                        "application = get_wsgi_application()\n\n"
                        "from shop.warmup import warm_caches  # noqa: E402  (needs the app registry)\n\n"
                        "warm_caches()\n",
                    ),
                ),
            ),
        ),
        Scenario(
            "irreversible-migration",
            "A data migration without reverse_code: the database cannot be rolled back by migrating.",
            "precheck",
            "db.rollback_plan",
            app=AppChange(
                title="chore(shop): normalise SKUs",
                author="erin",
                branch="chore/normalise-skus",
                kind="Chores",
                new_files=(("shop/migrations/0005_normalise_skus.py", _IRREVERSIBLE_MIGRATION),),
            ),
        ),
        Scenario(
            "open-port",
            "SSH (22/tcp) is opened to 0.0.0.0/0 on the service's security group.",
            "precheck",
            "network.security_groups",
            twin=TwinAction(open_port=22),
        ),
        Scenario(
            "missing-variable",
            "The release's task definition no longer defines ALLOWED_HOSTS.",
            "precheck",
            "env.variables",
            app=AppChange(
                title="chore(infra): tidy the task definition environment",
                author="erin",
                branch="chore/taskdef-env",
                kind="Chores",
                edits=(FileEdit(_TASKDEF, _ALLOWED_HOSTS_ENTRY, ""),),
            ),
        ),
        Scenario(
            "plaintext-secret",
            "SECRET_KEY is set as a plaintext environment value instead of a Secrets Manager reference.",
            "precheck",
            "env.variables",
            app=AppChange(
                title="fix(infra): set SECRET_KEY directly to unblock the deploy",
                author="erin",
                branch="fix/secret-key",
                kind="Fixes",
                edits=(
                    FileEdit(_TASKDEF, _SK_REFERENCE, ""),
                    FileEdit(_TASKDEF, _ALLOWED_HOSTS_ENTRY, _ALLOWED_HOSTS_ENTRY + _SK_PLAINTEXT),
                ),
            ),
        ),
        Scenario(
            "snapshot-failure",
            "The RDS manual snapshot taken before the deploy ends in status 'failed'.",
            "backup",
            "db.backup",
            twin=TwinAction(faults={"rds_snapshot_failure": True}),
        ),
        Scenario(
            "unreviewed-commit",
            "A commit pushed straight to main, with no pull request and no review.",
            "precheck",
            "code.review",
            app=AppChange(
                title="fix(shop): order categories by name",
                author="mallory",
                branch="main",
                reviewed=False,
                kind="Fixes",
                edits=(
                    FileEdit(
                        "shop/views.py",
                        'Category.objects.annotate(product_count=Count("products"))',
                        'Category.objects.annotate(product_count=Count("products")).order_by("name")',
                    ),
                ),
            ),
        ),
    )
}


def get(name: str) -> Scenario:
    """The scenario called `name`; KeyError lists the known names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def list_scenarios() -> list[dict[str, str | None]]:
    """One row per scenario for `shipbook sandbox scenarios`: name, side, phase, check, description."""
    return [
        {
            "name": s.name,
            "side": s.side,
            "phase": s.phase,
            "check": s.check,
            "description": s.description,
        }
        for s in SCENARIOS.values()
    ]


def _client(service: str, aws_url: str) -> Any:
    """A boto3 client for the twin (dummy credentials: the twin accepts any; loopback only)."""
    return boto3.client(
        service,
        endpoint_url=require_loopback(aws_url, "scenario AWS endpoint"),
        region_name=REGION,
        **DUMMY_CREDENTIALS,
    )


def service_security_group(ecs: Any) -> str:
    """The first security group of the ECS service's network configuration."""
    services = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    groups = (
        services[0].get("networkConfiguration", {}).get("awsvpcConfiguration", {}).get("securityGroups", [])
        if services
        else []
    )
    if not groups:
        raise LookupError(f"service {CLUSTER}/{SERVICE} has no security group in its network configuration")
    return str(groups[0])


def apply_twin(name: str, aws_url: str) -> list[str]:
    """Apply the scenario's twin-side change through the twin's APIs; return what was done."""
    scenario = get(name)
    done: list[str] = []
    if scenario.twin is None:
        return done
    require_loopback(aws_url, "scenario AWS endpoint")  # before the first change, not between two
    if scenario.twin.open_port is not None:
        ec2 = _client("ec2", aws_url)
        group = service_security_group(_client("ecs", aws_url))
        port = scenario.twin.open_port
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "temporary debugging access"}],
                }
            ],
        )
        done.append(f"authorized 0.0.0.0/0 on tcp/{port} of {group}")
    if scenario.twin.faults:
        response = requests.post(
            f"{aws_url}/_sandbox/faults",
            data=json.dumps(scenario.twin.faults),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        response.raise_for_status()
        done.append(f"faults set: {scenario.twin.faults}")
    for line in done:
        logger.info("scenario %s: %s", name, line)
    return done
