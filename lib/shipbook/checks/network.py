"""`network.security_groups`: every ingress rule of the ALB's, the app's and the database's groups is allowed.

Why by role and not by group id: the allowed list is written once per environment ("the ALB
takes 80/443 from the world, the app its port from the ALB only, the database 5432 from the app
only") and the groups are found through the live service, target group and DB instance, so a
group added to the service is checked without anyone listing it.

Verdicts: a world-open rule not on the list fails; any rule letting something other than the
allowed sources reach the database fails; another unexpected rule warns.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shipbook import aws
from shipbook.checks import CheckResult, check, worst
from shipbook.config import INGRESS_ROLES, Environment, PrecheckSection, parse_ingress
from shipbook.errors import AwsError, InputError

log = logging.getLogger(__name__)

CHECK_ID = "network.security_groups"
ROLES = INGRESS_ROLES
WORLD = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class Allowance:
    """One allowed ingress: `<group role> <protocol>/<port[-port]|container> <source>`.

    The source is `world`, a role (`alb`, `app`, `db`: any group of that role) or a CIDR.
    `container` stands for the service's container port (from its load balancer mapping).
    """

    group: str
    protocol: str
    from_port: int | str
    to_port: int | str
    source: str

    @classmethod
    def parse(cls, text: str) -> Allowance:
        """`"app tcp/container alb"`, `"alb tcp/443 world"`, `"db tcp/5432 app"` (the config's form)."""
        try:
            group, proto, low, high, source = parse_ingress(text)
        except ValueError as exc:
            raise InputError("allowed_ingress", str(exc)) from exc
        return cls(group, proto, low, high, source)

    def __str__(self) -> str:
        ports = f"{self.from_port}" if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
        return f"{self.group} {self.protocol}/{ports} {self.source}"


# The default of `[precheck] allowed_ingress`; the check reads the environment's list.
DEFAULT_ALLOWED: tuple[Allowance, ...] = tuple(Allowance.parse(t) for t in PrecheckSection().allowed_ingress)


@dataclass
class Groups:
    """The security groups of each role, found through the live resources."""

    by_role: dict[str, list[str]]
    container_port: int | None
    notes: list[str]

    def roles_of(self, group_id: str) -> list[str]:
        return [r for r, ids in self.by_role.items() if group_id in ids]


def find_groups(env: Environment, ecs: Any, elbv2: Any, rds: Any) -> Groups:
    """The app's groups from the ECS service, the ALB's from the target group, the DB's from the instance."""
    by_role: dict[str, list[str]] = {r: [] for r in ROLES}
    notes: list[str] = []
    port: int | None = None
    svc = aws.call(ecs, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])
    services = svc.get("services") or []
    if services:
        s = services[0]
        by_role["app"] = list((s.get("networkConfiguration") or {}).get("awsvpcConfiguration", {})
                              .get("securityGroups") or [])
        lbs = [lb for lb in s.get("loadBalancers") or [] if lb.get("containerName") in ("", None, env.stack.container)]
        port = int(lbs[0]["containerPort"]) if lbs and lbs[0].get("containerPort") else None
    else:
        notes.append(f"ECS service {env.stack.cluster}/{env.stack.service} not found")
    if env.stack.target_group:
        try:
            lb_arns = list(aws.target_group(elbv2, env.stack.target_group).get("LoadBalancerArns") or [])
        except AwsError as exc:
            if exc.code != "TargetGroupNotFound":
                raise
            lb_arns = []
        if lb_arns:
            lbs = aws.call(elbv2, "describe_load_balancers", LoadBalancerArns=lb_arns).get("LoadBalancers") or []
            by_role["alb"] = list(dict.fromkeys(g for lb in lbs for g in lb.get("SecurityGroups") or []))
        else:
            notes.append(f"target group {env.stack.target_group} has no load balancer")
    if env.stack.db_instance:
        dbs = aws.call(rds, "describe_db_instances", DBInstanceIdentifier=env.stack.db_instance).get("DBInstances")
        by_role["db"] = [g["VpcSecurityGroupId"] for d in dbs or [] for g in d.get("VpcSecurityGroups") or []]
    for role, ids in by_role.items():
        if not ids:
            notes.append(f"no security group found for the {role}")
    return Groups(by_role, port, notes)


def _ports(perm: dict) -> tuple[int, int]:
    if perm.get("IpProtocol") in ("-1", "all"):
        return 0, 65535
    return int(perm.get("FromPort", 0)), int(perm.get("ToPort", perm.get("FromPort", 0)))


def _sources(perm: dict) -> list[tuple[str, str]]:
    """(kind, value) per source of a rule: cidr / group / prefix-list."""
    out = [("cidr", r["CidrIp"]) for r in perm.get("IpRanges") or []]
    out += [("cidr", r["CidrIpv6"]) for r in perm.get("Ipv6Ranges") or []]
    out += [("group", r["GroupId"]) for r in perm.get("UserIdGroupPairs") or []]
    out += [("prefix-list", r["PrefixListId"]) for r in perm.get("PrefixListIds") or []]
    return out


def _resolve(port: int | str, container_port: int | None) -> int | None:
    return container_port if port == "container" else int(port)


def _allows(a: Allowance, role: str, proto: str, lo: int, hi: int, kind: str, value: str, groups: Groups) -> bool:
    if a.group != role or (a.protocol not in (proto, "-1")):
        return False
    a_lo, a_hi = _resolve(a.from_port, groups.container_port), _resolve(a.to_port, groups.container_port)
    if a_lo is None or a_hi is None or not (a_lo <= lo and hi <= a_hi):
        return False
    if a.source == "world":
        return kind == "cidr" and value in WORLD
    if a.source in ROLES:
        return kind == "group" and value in groups.by_role.get(a.source, [])
    if kind != "cidr":
        return False
    try:
        net, allowed = ipaddress.ip_network(value, strict=False), ipaddress.ip_network(a.source, strict=False)
    except ValueError:
        return False
    return net.version == allowed.version and net.subnet_of(allowed)  # type: ignore[arg-type]


def _source_label(kind: str, value: str, groups: Groups) -> str:
    if kind == "cidr" and value in WORLD:
        return f"world ({value})"
    if kind == "group":
        roles = groups.roles_of(value)
        return f"{'/'.join(roles)} group {value}" if roles else f"group {value}"
    return value


@check(CHECK_ID)
def security_groups(env: Environment, ec2: Any = None, ecs: Any = None, elbv2: Any = None, rds: Any = None,
                    allowed: Iterable[Allowance | str] | None = None) -> CheckResult:
    """Every ingress rule of the ALB, app and DB groups against the allowed list (`precheck.allowed_ingress`)."""
    allow = [a if isinstance(a, Allowance) else Allowance.parse(a)
             for a in (env.precheck.allowed_ingress if allowed is None else allowed)]
    ec2 = ec2 if ec2 is not None else aws.client(env, "ec2")
    groups = find_groups(env, ecs if ecs is not None else aws.client(env, "ecs"),
                         elbv2 if elbv2 is not None else aws.client(env, "elbv2"),
                         rds if rds is not None else aws.client(env, "rds"))
    ids = list(dict.fromkeys(g for ids in groups.by_role.values() for g in ids))
    described = aws.call(ec2, "describe_security_groups", GroupIds=ids).get("SecurityGroups", []) if ids else []
    rows: list[dict] = []
    for sg in described:
        roles = groups.roles_of(sg["GroupId"])
        for perm in sg.get("IpPermissions") or []:
            proto = str(perm.get("IpProtocol", "-1"))
            lo, hi = _ports(perm)
            ports = "all" if proto in ("-1", "all") else (f"{lo}" if lo == hi else f"{lo}-{hi}")
            for kind, value in _sources(perm):
                ok = any(_allows(a, role, proto, lo, hi, kind, value, groups) for a in allow for role in roles)
                world = kind == "cidr" and value in WORLD
                if ok:
                    verdict, note = "pass", "allowed"
                elif world:
                    verdict, note = "fail", "open to the world and not on the allowed list"
                elif "db" in roles:
                    verdict, note = "fail", "the database is reachable from a source not on the allowed list"
                else:
                    verdict, note = "warn", "not on the allowed list"
                rows.append({"group": f"{'/'.join(roles)} {sg['GroupId']} ({sg.get('GroupName', '')})",
                             "protocol": "all" if proto == "-1" else proto, "ports": ports,
                             "source": _source_label(kind, value, groups), "verdict": verdict, "note": note})
    rows += [{"group": "", "protocol": "", "ports": "", "source": "", "verdict": "warn", "note": n}
             for n in groups.notes]
    bad = [r for r in rows if r["verdict"] == "fail"]
    odd = [r for r in rows if r["verdict"] == "warn"]
    verdict = worst(r["verdict"] for r in rows)
    if bad:
        summary = "; ".join(f"{r['protocol']}/{r['ports']} from {r['source']} on {r['group'].split(' (')[0]}"
                            for r in bad)
    elif odd:
        summary = "; ".join(r["note"] if not r["group"] else f"{r['protocol']}/{r['ports']} from {r['source']}: "
                            f"{r['note']}" for r in odd)
    else:
        summary = f"{len(rows)} ingress rules on {len(described)} groups, all on the allowed list"
    evidence = ("groups of ECS service {s}, the load balancer of target group {t}, DB instance {d}; "
                "allowed{w}: {a}").format(s=env.stack.service, t=env.stack.target_group, d=env.stack.db_instance,
                                          w=" (precheck.allowed_ingress)" if allowed is None else "",
                                          a="; ".join(str(a) for a in allow))
    return CheckResult(CHECK_ID, verdict, summary, rows, evidence)
