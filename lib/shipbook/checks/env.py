"""`env.variables`: the task definition being released defines what the app needs, safely.

Why from the release commit's `infra/taskdef.json` and not the live service: the check is about
what is about to be deployed. Secrets must come from `secrets` (Secrets Manager / SSM
`valueFrom`); a secret-looking name under `environment` is a plaintext secret and fails. The
referenced secrets are checked by metadata only (DescribeSecret / DescribeParameters): this
module never reads a secret's value, and never puts any `environment` value in its result
except the host names of ALLOWED_HOSTS.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from shipbook import aws
from shipbook.checks import CheckResult, Release, check, worst
from shipbook.config import Environment, PrecheckSection
from shipbook.errors import AwsError, InputError

log = logging.getLogger(__name__)

CHECK_ID = "env.variables"
TASKDEF_PATH = "infra/taskdef.json"
# The default of `[precheck] required_variables`; the check reads the environment's list.
REQUIRED_VARIABLES: tuple[str, ...] = PrecheckSection().required_variables
# A name matching this holds a secret and must come from `secrets`. DATABASE_URL carries the
# database password. Proposed config: [precheck] secret_variables (extra names).
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIAL|ACCESS_KEY|DATABASE_URL|DSN",
                         re.IGNORECASE)
_MISSING_CODES = ("ResourceNotFoundException", "ParameterNotFound", "ResourceNotFound")


# --------------------------------------------------------------------------- task definition helpers


def container_of(taskdef: dict, name: str = "") -> dict:
    """The container called `name` (the environment's `stack.container`), else the only/first one."""
    containers = taskdef.get("containerDefinitions") or []
    if not containers:
        raise InputError(TASKDEF_PATH, "defines no containerDefinitions")
    if name:
        for c in containers:
            if c.get("name") == name:
                return c
        raise InputError(TASKDEF_PATH, f"has no container named {name!r} "
                         f"(found: {', '.join(str(c.get('name')) for c in containers)})")
    return containers[0]


@dataclass(frozen=True)
class SecretRef:
    """A `secrets` entry: the variable and where ECS reads it from."""

    name: str
    value_from: str

    @property
    def store(self) -> str:
        """`secretsmanager` or `ssm`, from the ARN, else from the shape of a bare name."""
        if self.value_from.startswith("arn:"):
            service = self.value_from.split(":")[2]
            return "ssm" if service == "ssm" else "secretsmanager"
        return "ssm" if self.value_from.startswith("/") else "secretsmanager"

    @property
    def lookup_id(self) -> str:
        """The id to describe: an ARN without ECS's `:json-key:stage:version` suffix, or the SSM name."""
        v = self.value_from
        if self.store == "ssm":
            return v.split(":parameter", 1)[1] if v.startswith("arn:") else v
        if v.startswith("arn:"):
            return ":".join(v.split(":")[:7])
        return v


def secret_refs(container: dict) -> list[SecretRef]:
    return [SecretRef(str(s.get("name", "")), str(s.get("valueFrom", ""))) for s in container.get("secrets") or []]


def environment_names(container: dict) -> list[str]:
    """Names only: values of `environment` never leave this module."""
    return [str(e.get("name", "")) for e in container.get("environment") or []]


def describe_secret(sm: Any, ssm: Any, ref: SecretRef) -> dict:
    """Metadata of the referenced secret ({} when it does not exist). Never the value."""
    try:
        if ref.store == "ssm":
            found = aws.call(ssm, "describe_parameters",
                             ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [ref.lookup_id]}])
            params = found.get("Parameters") or []
            return {"ARN": params[0].get("ARN", ref.lookup_id), "Name": params[0].get("Name")} if params else {}
        return aws.call(sm, "describe_secret", SecretId=ref.lookup_id)
    except AwsError as exc:
        if exc.code in _MISSING_CODES:
            return {}
        raise


def allowed_hosts_cover(hosts: Iterable[str], host: str) -> bool:
    """Django's ALLOWED_HOSTS matching: `*`, an exact name, or `.domain` for it and its subdomains."""
    host = host.lower().rstrip(".")
    for pattern in (h.strip().lower() for h in hosts):
        if not pattern:
            continue
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
            return True
    return False


# --------------------------------------------------------------------------- the check


@check(CHECK_ID)
def variables(env: Environment, release: Release, sm: Any = None, ssm: Any = None,
              required: Iterable[str] | None = None, secret_name: re.Pattern[str] = SECRET_NAME,
              taskdef_path: str = TASKDEF_PATH) -> CheckResult:
    """Every required variable defined; secrets by reference and existing; ALLOWED_HOSTS covers the host.

    The required variables are the environment's `precheck.required_variables` unless `required` is given.
    """
    taskdef = release.read_json(taskdef_path)
    container = container_of(taskdef, env.stack.container)
    plain = environment_names(container)
    refs = {r.name: r for r in secret_refs(container)}
    required = list(dict.fromkeys(env.precheck.required_variables if required is None else required))
    sm = sm if sm is not None else aws.client(env, "secretsmanager")
    ssm = ssm if ssm is not None else (aws.client(env, "ssm") if any(r.store == "ssm" for r in refs.values())
                                       else None)
    rows: list[dict] = []
    problems: list[str] = []
    for name in dict.fromkeys([*required, *plain, *refs]):
        row = {"variable": name, "required": "yes" if name in required else "", "source": "", "reference": "",
               "exists": "", "verdict": "pass", "note": ""}
        in_env, ref = name in plain, refs.get(name)
        if ref:
            row.update(source=f"secrets ({'SSM' if ref.store == 'ssm' else 'Secrets Manager'})",
                       reference=ref.value_from)
            meta = describe_secret(sm, ssm, ref)
            if not meta:
                row.update(exists="no", verdict="fail", note="the referenced secret does not exist")
                problems.append(f"{name}: secret not found")
            elif meta.get("DeletedDate"):
                row.update(exists="deleted", verdict="fail", note="the secret is scheduled for deletion")
                problems.append(f"{name}: secret scheduled for deletion")
            else:
                row.update(exists="yes")
        if in_env:
            row["source"] = (row["source"] + " + " if row["source"] else "") + "environment (plaintext)"
            if secret_name.search(name):
                row.update(verdict="fail", note="a secret set as a plaintext value (value not shown)")
                problems.append(f"{name}: plaintext secret")
            elif ref:
                row.update(verdict="warn", note="defined both as a plaintext value and as a secret")
        if not in_env and not ref:
            row.update(source="missing", verdict="fail", note="not defined in the task definition")
            problems.append(f"{name}: missing")
        rows.append(row)
    hosts_row, hosts_problem = _allowed_hosts(env, container, refs)
    if hosts_row:
        rows.append(hosts_row)
    if hosts_problem:
        problems.append(hosts_problem)
    verdict = worst(r["verdict"] for r in rows)
    n_secrets = len(refs)
    warnings = [f"{r['variable']}: {r['note']}" for r in rows if r["verdict"] == "warn"]
    if problems:
        summary = "; ".join(problems)
    elif warnings:
        summary = "; ".join(warnings)
    else:
        summary = (f"{len(required)} required variables defined; {n_secrets} secrets by reference, all exist"
                   + (f"; {hosts_row['note']}" if hosts_row else ""))
    return CheckResult(CHECK_ID, verdict, summary, rows,
                       evidence=f"{release.where(taskdef_path)}, container {container.get('name')}; "
                                "secret metadata via DescribeSecret/DescribeParameters (values never read)")


def _allowed_hosts(env: Environment, container: dict, refs: dict[str, SecretRef]) -> tuple[dict | None, str]:
    """The ALLOWED_HOSTS row: does it cover the public host? Its value is host names, not a secret."""
    host = urlparse(env.app.public_url).hostname if env.app.public_url else ""
    values = [str(e.get("value", "")) for e in container.get("environment") or [] if e.get("name") == "ALLOWED_HOSTS"]
    row = {"variable": "ALLOWED_HOSTS covers the public host", "required": "yes", "source": "",
           "reference": env.app.public_url, "exists": "", "verdict": "pass", "note": ""}
    if not host:
        row.update(verdict="warn", note="no app.public_url configured: coverage not checked")
        return row, ""
    if not values:
        if "ALLOWED_HOSTS" in refs:
            row.update(verdict="warn", note="ALLOWED_HOSTS comes from a secret: coverage not checked")
            return row, ""
        return None, ""  # missing: already failed above
    hosts = [h.strip() for h in values[-1].split(",") if h.strip()]
    row["source"] = ", ".join(hosts)
    if allowed_hosts_cover(hosts, host):
        row["note"] = f"ALLOWED_HOSTS covers {host}"
        return row, ""
    row.update(verdict="fail", note=f"{host} is not in ALLOWED_HOSTS")
    return row, f"ALLOWED_HOSTS does not cover {host}"
