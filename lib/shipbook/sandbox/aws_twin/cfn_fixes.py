"""Fixes to moto 5.2.5's CloudFormation where it diverges from AWS on the resources we use.

- AWS::ECS::TaskDefinition drops Cpu, NetworkMode, RequiresCompatibilities and the roles, and
  its update does not convert ContainerDefinitions to API casing. Replaced by a full mapping
  (an update registers a new revision; the old one stays registered so a rollback can use it).
- AWS::ECS::Service drops LaunchType, LoadBalancers, NetworkConfiguration and
  DeploymentConfiguration (the circuit breaker). Replaced by a full mapping; an update goes
  through `update_service`, so the ECS rollout extension sees it like an API call.
- Fn::GetAtt of LoadBalancerFullName / TargetGroupFullName (the CloudWatch dimension values)
  is not implemented for ALBs and target groups; added.
- AWS::RDS::DBInstance ignores VPCSecurityGroups (the database got the VPC's default group),
  DeletionProtection and ManageMasterUserPassword; applied after moto creates the instance.
- Fn::GetAtt of a log group's Arn lacks the `:*` suffix AWS returns (the form IAM policies use
  to cover the group's streams); added.
- AWS::EC2::VPC ignores EnableDnsHostnames and EnableDnsSupport (so the task ENIs of RunTask had no
  private DNS name and RunTask failed with HTTP 500); applied after moto creates the VPC.
- UpdateStack only modifies resources whose own text or `Ref`'d parameters changed, so a new
  `ImageTag` produced a new task definition but left the service on the old one. The diff now
  follows `Ref`, `Fn::GetAtt`, `Fn::Sub` and `DependsOn` to dependents, in dependency order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from moto.cloudformation.parsing import ResourceMap
from moto.core.utils import pascal_to_camelcase, remap_nested_keys
from moto.ec2.models.vpcs import VPC
from moto.ecs.models import Cluster, Service, TaskDefinition, ecs_backends
from moto.elbv2.models import FakeLoadBalancer, FakeTargetGroup
from moto.logs.models import LogGroup
from moto.rds.models import DBInstance, MasterUserSecret

log = logging.getLogger(__name__)

_SUB_VAR = re.compile(r"\$\{([A-Za-z0-9:]+)(?:\.[A-Za-z0-9.]+)?\}")


def _camel(value: Any) -> Any:
    return remap_nested_keys(value, pascal_to_camelcase) if value is not None else None


def _name(value: Any, attr: str = "name") -> Any:
    """A resolved `Ref` is sometimes the model object itself, sometimes its physical id."""
    return getattr(value, attr) if hasattr(value, attr) and not isinstance(value, str) else value


# ------------------------------------------------------------------ ECS TaskDefinition
def _register_task_definition(props: dict[str, Any], account_id: str, region_name: str) -> TaskDefinition:
    backend = ecs_backends[account_id][region_name]
    return backend.register_task_definition(
        family=props["Family"],
        container_definitions=_camel(props.get("ContainerDefinitions", [])),
        volumes=_camel(props.get("Volumes", [])),
        network_mode=props.get("NetworkMode"),
        tags=_camel(props.get("Tags")),
        placement_constraints=_camel(props.get("PlacementConstraints")),
        requires_compatibilities=props.get("RequiresCompatibilities"),
        cpu=None if props.get("Cpu") is None else str(props["Cpu"]),
        memory=None if props.get("Memory") is None else str(props["Memory"]),
        task_role_arn=props.get("TaskRoleArn"),
        execution_role_arn=props.get("ExecutionRoleArn"),
        runtime_platform=_camel(props.get("RuntimePlatform")),
        ephemeral_storage=_camel(props.get("EphemeralStorage")),
    )


def _task_definition_create(
    cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> TaskDefinition:
    return _register_task_definition(cloudformation_json["Properties"], account_id, region_name)


def _task_definition_update(
    cls: type,
    original_resource: TaskDefinition,
    new_resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
) -> TaskDefinition:
    return _register_task_definition(cloudformation_json["Properties"], account_id, region_name)


# ---------------------------------------------------------------------- ECS Service
def _service_kwargs(props: dict[str, Any]) -> dict[str, Any]:
    task_definition = props.get("TaskDefinition")
    if isinstance(task_definition, TaskDefinition):
        task_definition = task_definition.arn
    return {
        "cluster_str": _name(props.get("Cluster") or "default"),
        "task_definition_str": task_definition,
        "desired_count": None if props.get("DesiredCount") is None else int(props["DesiredCount"]),
        "load_balancers": _camel(props.get("LoadBalancers")) or [],
        "launch_type": props.get("LaunchType"),
        "network_configuration": _camel(props.get("NetworkConfiguration")),
        "platform_version": props.get("PlatformVersion"),
        "propagate_tags": props.get("PropagateTags") or "NONE",
        "tags": _camel(props.get("Tags")),
        "role_arn": props.get("Role"),
        "deployment_controller": _camel(props.get("DeploymentController")),
    }


def _service_extras(service: Service, props: dict[str, Any], kw: dict[str, Any]) -> None:
    service.cfn_applied = {"TaskDefinition": kw["task_definition_str"], "DesiredCount": kw["desired_count"]}
    if props.get("DeploymentConfiguration") is not None:
        service.deployment_configuration = _camel(props["DeploymentConfiguration"])
    if props.get("HealthCheckGracePeriodSeconds") is not None:
        service.health_check_grace_period_seconds = int(props["HealthCheckGracePeriodSeconds"])


def _service_create(
    cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> Service:
    props = cloudformation_json["Properties"]
    kw = _service_kwargs(props)
    backend = ecs_backends[account_id][region_name]
    service = backend.create_service(
        kw["cluster_str"], resource_name, kw["desired_count"] or 0, kw["task_definition_str"],
        **{k: v for k, v in kw.items() if k not in ("cluster_str", "desired_count", "task_definition_str")},
    )
    _service_extras(service, props, kw)
    return service


def _service_update(
    cls: type,
    original_resource: Service,
    new_resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
) -> Service:
    props = cloudformation_json["Properties"]
    kw = _service_kwargs(props)
    backend = ecs_backends[account_id][region_name]
    cluster = Cluster(kw["cluster_str"].split("/")[-1], account_id, region_name)
    if original_resource.cluster_arn != cluster.arn or original_resource.name != new_resource_name:
        backend.delete_service(original_resource.cluster_name, original_resource.name, force=True)
        return _service_create(cls, new_resource_name, cloudformation_json, account_id, region_name)
    # Like CloudFormation, send only what changed in the template: a task definition or desired
    # count set out of band (a deploy pipeline, auto scaling) is not reverted by an unrelated update.
    applied = getattr(original_resource, "cfn_applied", {})
    update: dict[str, Any] = {"cluster": original_resource.cluster_name, "service": original_resource.name}
    if kw["task_definition_str"] != applied.get("TaskDefinition"):
        update["task_definition"] = kw["task_definition_str"]
    if kw["desired_count"] != applied.get("DesiredCount"):
        update["desired_count"] = kw["desired_count"]
    if props.get("DeploymentConfiguration") is not None:
        update["deployment_configuration"] = _camel(props["DeploymentConfiguration"])
    if kw["network_configuration"]:
        update["network_configuration"] = kw["network_configuration"]
    service = backend.update_service(update)
    _service_extras(service, props, kw)
    return service


# ----------------------------------------------------------------- RDS DBInstance
_original_db_create = DBInstance.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


def _truthy(value: Any) -> bool:
    return value in (True, "true", "True")


def _db_instance_create(
    cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> DBInstance:
    props = cloudformation_json["Properties"]
    database = _original_db_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    if props.get("VPCSecurityGroups"):
        database.vpc_security_group_ids = [_name(g, "group_id") for g in props["VPCSecurityGroups"]]
    database.deletion_protection = _truthy(props.get("DeletionProtection"))
    if _truthy(props.get("StorageEncrypted")) and not getattr(database, "kms_key_id", None):
        # AWS encrypts with the account's aws/rds key when none is named; moto leaves it unset,
        # which makes every snapshot of the instance report Encrypted=false.
        database.kms_key_id = f"arn:aws:kms:{region_name}:{account_id}:alias/aws/rds"
    if _truthy(props.get("ManageMasterUserPassword")) and not database.manage_master_user_password:
        database.manage_master_user_password = True
        database.master_user_secret = MasterUserSecret(database, props.get("MasterUserSecret", {}).get("KmsKeyId"))
        database.master_user_secret._status = "active"  # RDS has rotated it in by the time the stack completes
    return database


# ----------------------------------------------------------------------- EC2 VPC
_original_vpc_create = VPC.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


def _vpc_create(
    cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> VPC:
    props = cloudformation_json["Properties"]
    vpc = _original_vpc_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    if "EnableDnsHostnames" in props:
        vpc.enable_dns_hostnames = _truthy(props["EnableDnsHostnames"])
    if "EnableDnsSupport" in props:
        vpc.enable_dns_support = _truthy(props["EnableDnsSupport"])
    return vpc


# --------------------------------------------------------------- ELBv2 attributes
_original_lb_attribute = FakeLoadBalancer.get_cfn_attribute


def _lb_attribute(self: FakeLoadBalancer, attribute_name: str) -> Any:
    if attribute_name == "LoadBalancerFullName":
        return self.arn.split(":loadbalancer/", 1)[1]
    if attribute_name == "SecurityGroups":
        return list(self.security_groups)
    if attribute_name == "CanonicalHostedZoneID":
        return "Z14GRHDCWA56QT"  # ALBs in ap-northeast-1
    return _original_lb_attribute(self, attribute_name)


_TG_ATTRIBUTES = ("TargetGroupFullName", "TargetGroupName", "TargetGroupArn", "LoadBalancerArns")


def _tg_has_attr(cls: type, attr: str) -> bool:
    return attr in _TG_ATTRIBUTES


def _tg_attribute(self: FakeTargetGroup, attribute_name: str) -> Any:
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

    values = {
        "TargetGroupFullName": self.arn.split(":")[-1],
        "TargetGroupName": self.name,
        "TargetGroupArn": self.arn,
        "LoadBalancerArns": list(self.load_balancer_arns),
    }
    if attribute_name not in values:
        raise UnformattedGetAttTemplateException()
    return values[attribute_name]


_original_log_group_attribute = LogGroup.get_cfn_attribute


def _log_group_attribute(self: LogGroup, attribute_name: str) -> Any:
    if attribute_name == "Arn":
        return f"{self.arn}:*"
    return _original_log_group_attribute(self, attribute_name)


# --------------------------------------------------------------------- UpdateStack diff
def references(node: Any, depends_on: bool = True) -> set[str]:
    """Names a template fragment uses: Ref, Fn::GetAtt, Fn::Sub variables (and DependsOn)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(_SUB_VAR.findall(text) if isinstance(text, str) else [])
                if isinstance(value, list) and len(value) > 1:
                    found.update(references(value[1], depends_on))
            elif key == "DependsOn":
                if depends_on:
                    found.update([value] if isinstance(value, str) else value)
            else:
                found.update(references(value, depends_on))
    elif isinstance(node, list):
        for item in node:
            found.update(references(item, depends_on))
    return found


def dependency_order(names: Iterable[str], resources: dict[str, Any]) -> list[str]:
    """`names` sorted so that every resource comes after the resources it references."""
    wanted = list(names)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered or name in visiting:
            return
        visiting.add(name)
        for dep in sorted(references(resources.get(name, {}))):
            if dep in wanted:
                visit(dep)
        ordered.append(name)

    for name in wanted:
        visit(name)
    return ordered


_original_build_resource_diff = ResourceMap.build_resource_diff


def _normalized(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "Properties": body.get("Properties") or {}}


def _build_resource_diff(
    self: ResourceMap, other_template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    diff = _original_build_resource_diff(self, other_template, parameters)
    new, old = other_template["Resources"], self._resource_json_map
    # moto adds an empty Properties to the stored template of a resource that had none, which made
    # it (and everything referring to it) look modified on every update
    diff["Modify"] = [n for n in new if n in old and _normalized(new[n]) != _normalized(old[n])]
    changed: set[str] = set(diff["Modify"]) | set(diff["Add"])
    if parameters:
        changed |= {p for p in parameters if self.input_parameters.get(p) != parameters[p]}
    grew = True
    while grew:
        grew = False
        for name, body in new.items():
            if name in changed or name not in self._resource_json_map:
                continue
            if references(body, depends_on=False) & changed:  # DependsOn orders, it does not update
                changed.add(name)
                diff["Modify"].append(name)
                grew = True
    diff["Modify"] = dependency_order(dict.fromkeys(diff["Modify"]), new)
    return diff


def install() -> None:
    """Patch moto's ECS CloudFormation models and the UpdateStack diff."""
    TaskDefinition.create_from_cloudformation_json = classmethod(_task_definition_create)  # type: ignore[method-assign,assignment]
    TaskDefinition.update_from_cloudformation_json = classmethod(_task_definition_update)  # type: ignore[method-assign,assignment]
    Service.create_from_cloudformation_json = classmethod(_service_create)  # type: ignore[method-assign,assignment]
    Service.update_from_cloudformation_json = classmethod(_service_update)  # type: ignore[method-assign,assignment]
    ResourceMap.build_resource_diff = _build_resource_diff  # type: ignore[method-assign]
    FakeLoadBalancer.get_cfn_attribute = _lb_attribute  # type: ignore[method-assign]
    FakeTargetGroup.has_cfn_attr = classmethod(_tg_has_attr)  # type: ignore[method-assign,assignment]
    FakeTargetGroup.get_cfn_attribute = _tg_attribute  # type: ignore[attr-defined]
    LogGroup.get_cfn_attribute = _log_group_attribute  # type: ignore[method-assign]
    DBInstance.create_from_cloudformation_json = classmethod(_db_instance_create)  # type: ignore[method-assign,assignment]
    VPC.create_from_cloudformation_json = classmethod(_vpc_create)  # type: ignore[method-assign,assignment]
    log.debug("CloudFormation fixes installed")
