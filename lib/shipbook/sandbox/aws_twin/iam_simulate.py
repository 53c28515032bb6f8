"""IAM SimulatePrincipalPolicy, evaluated from the principal's own policies.

moto 5.2.5 does not implement the simulator. Here the identity-based policies of the principal
(a role: its inline and attached managed policies; a user: its own and its groups' policies),
plus any `PolicyInputList` documents, are evaluated per action and resource the way IAM does
for identity policies: an explicit Deny wins, else an Allow decides, else the implicit deny.
`Action`/`NotAction` match case-insensitively with `*` and `?` wildcards, `Resource`/
`NotResource` case-sensitively. A statement with a `Condition` matches only when every key it
tests is given in `ContextEntries` with a value that satisfies it (StringEquals/StringLike and
their negations); otherwise the keys are reported in MissingContextValues and it does not match.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from moto.core.responses import ActionResult
from moto.iam.exceptions import InvalidInput, NoSuchEntity, NotFoundException
from moto.iam.models import IAMBackend
from moto.iam.responses import IamResponse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourcePolicy:
    """One policy document with the ids the simulator reports for it."""

    policy_id: str
    policy_type: str
    document: dict[str, Any]


@lru_cache(maxsize=512)
def _pattern(text: str, case_sensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE)


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _any_match(patterns: Iterable[str], value: str, case_sensitive: bool) -> bool:
    return any(_pattern(p, case_sensitive).match(value) for p in patterns)


def _document(raw: Any) -> dict[str, Any]:
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _condition_holds(condition: dict[str, Any], context: dict[str, list[str]], missing: set[str]) -> bool:
    holds = True
    for test, keys in condition.items():
        for key, expected in keys.items():
            given = context.get(key.lower())
            if given is None:
                missing.add(key)
                holds = False
                continue
            wanted = _listed(expected)
            if test in ("StringEquals", "StringEqualsIgnoreCase"):
                ok = any(g == w or (test.endswith("IgnoreCase") and g.lower() == w.lower())
                         for g in given for w in wanted)
            elif test == "StringLike":
                ok = any(_pattern(w, True).match(g) for g in given for w in wanted)
            elif test == "StringNotEquals":
                ok = all(g != w for g in given for w in wanted)
            elif test == "StringNotLike":
                ok = not any(_pattern(w, True).match(g) for g in given for w in wanted)
            else:
                ok = False
            holds = holds and ok
    return holds


def _statements(document: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    yield from enumerate(statements)


def _applies(statement: dict[str, Any], action: str, resource: str, context: dict[str, list[str]],
             missing: set[str]) -> bool:
    if "Action" in statement and not _any_match(_listed(statement["Action"]), action, False):
        return False
    if "NotAction" in statement and _any_match(_listed(statement["NotAction"]), action, False):
        return False
    if "Resource" in statement and not _any_match(_listed(statement["Resource"]), resource, True):
        return False
    if "NotResource" in statement and _any_match(_listed(statement["NotResource"]), resource, True):
        return False
    condition = statement.get("Condition")
    return not condition or _condition_holds(condition, context, missing)


def decide(policies: Iterable[SourcePolicy], action: str, resource: str,
           context: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """One EvaluationResult: decision, the statements that decided it, missing context keys."""
    allowed: list[dict[str, Any]] = []
    denied: list[dict[str, Any]] = []
    missing: set[str] = set()
    for policy in policies:
        for index, statement in _statements(policy.document):
            if not _applies(statement, action, resource, context or {}, missing):
                continue
            matched = {
                "SourcePolicyId": policy.policy_id,
                "SourcePolicyType": policy.policy_type,
                "StartPosition": {"Line": index + 1, "Column": 1},
                "EndPosition": {"Line": index + 1, "Column": 1},
            }
            (denied if statement.get("Effect") == "Deny" else allowed).append(matched)
    if denied:
        decision, matched_statements = "explicitDeny", denied
    elif allowed:
        decision, matched_statements = "allowed", allowed
    else:
        decision, matched_statements = "implicitDeny", []
    return {
        "EvalActionName": action,
        "EvalResourceName": resource,
        "EvalDecision": decision,
        "MatchedStatements": matched_statements,
        "MissingContextValues": sorted(missing),
        "EvalDecisionDetails": {},
    }


def _managed(policies: Iterable[Any]) -> Iterator[SourcePolicy]:
    for policy in policies:
        version = next((v for v in policy.versions if v.is_default), None)
        if version is None:
            continue
        kind = "aws-managed" if ":aws:policy/" in policy.arn else "user-managed"
        yield SourcePolicy(policy.name, kind, _document(version.document))


def principal_policies(backend: IAMBackend, arn: str) -> list[SourcePolicy]:
    """The identity-based policies of the role, user or group named by `arn`."""
    kind, _, path = arn.split(":", 5)[-1].partition("/")
    name = path.rsplit("/", 1)[-1]
    try:
        if kind == "role":
            role = backend.get_role_by_arn(arn)
            found = [SourcePolicy(n, "role", _document(d)) for n, d in role.policies.items()]
            return found + list(_managed(role.managed_policies.values()))
        if kind == "user":
            user = backend.get_user(name)
            found = [SourcePolicy(n, "user", _document(d)) for n, d in user.policies.items()]
            found += list(_managed(user.managed_policies.values()))
            for group in backend.get_groups_for_user(name):
                found += [SourcePolicy(n, "group", _document(d)) for n, d in group.policies.items()]
                found += list(_managed(group.managed_policies.values()))
            return found
        if kind == "group":
            group = backend.get_group(name)
            found = [SourcePolicy(n, "group", _document(d)) for n, d in group.policies.items()]
            return found + list(_managed(group.managed_policies.values()))
    except NotFoundException as exc:
        raise NoSuchEntity(f"The principal {arn} does not exist.") from exc
    raise InvalidInput(f"Invalid ARN for PolicySourceArn: {arn}")


def _context(entries: list[dict[str, Any]] | None) -> dict[str, list[str]]:
    return {str(e["ContextKeyName"]).lower(): _listed(e.get("ContextKeyValues")) for e in entries or []}


def _simulate_principal_policy(self: IamResponse) -> ActionResult:
    """SimulatePrincipalPolicy in AWS's response shape (one result per action and resource)."""
    source = self._get_param("PolicySourceArn")
    actions = self._get_param("ActionNames") or []
    resources = self._get_param("ResourceArns") or ["*"]
    policies = principal_policies(self.backend, source)
    extra = self._get_param("PolicyInputList") or []
    policies += [SourcePolicy(f"PolicyInputList.{i + 1}", "none", _document(d)) for i, d in enumerate(extra)]
    context = _context(self._get_param("ContextEntries"))
    results = [decide(policies, action, resource, context) for action in actions for resource in resources]
    log.debug("simulated %d evaluations for %s", len(results), source)
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


def install() -> None:
    """Add SimulatePrincipalPolicy to moto's IAM."""
    IamResponse.simulate_principal_policy = _simulate_principal_policy  # type: ignore[attr-defined]
