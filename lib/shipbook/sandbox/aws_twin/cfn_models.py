"""CloudFormation resource types moto 5.2.5 cannot create, taught to its CloudFormation engine.

moto skips AWS::CloudWatch::Alarm, AWS::SNS::Subscription, AWS::SecretsManager::Secret and the
two AWS::ApplicationAutoScaling types with a warning, so a stack from the real template would be
missing its alarms, secrets and scaling. Each class below is a `CloudFormationModel` that creates
the resource in moto's own backend, so `CreateStack`/`UpdateStack`/`DeleteStack` and `Ref`
behave as on AWS. moto discovers models through `CloudFormationModel.__subclasses__()`, so
importing this module before the first stack operation is all it takes (`install()` checks).
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudformation import parsing
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.secretsmanager.models import secretsmanager_backends
from moto.sns.models import sns_backends

log = logging.getLogger(__name__)


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    return cloudformation_json.get("Properties") or {}


def _num(value: Any, kind: type = float) -> Any:
    """CloudFormation passes Number parameters as strings; the backends want numbers."""
    return None if value is None else kind(value)


class _Model:
    """Shared defaults: resources are created synchronously and expose no attributes.

    A mixin, because moto finds models through `CloudFormationModel.__subclasses__()`, which
    lists direct subclasses only.
    """

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    def is_created(self) -> bool:
        return True

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        """Deletion goes through the instance's `delete`, which moto prefers."""


class SecretResource(_Model, CloudFormationModel):
    """AWS::SecretsManager::Secret (Ref = ARN). Without SecretString or GenerateSecretString the
    secret is created empty, as on AWS; its value is then written out of band."""

    def __init__(self, arn: str, name: str) -> None:
        self.arn = arn
        self.name = name

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @staticmethod
    def _generate(spec: dict[str, Any]) -> str:
        alphabet = string.ascii_letters + string.digits
        if not spec.get("ExcludePunctuation"):
            alphabet += "!#$%&()*+,-./:;<=>?@[]^_`{|}~"
        excluded = set(spec.get("ExcludeCharacters", ""))
        alphabet = "".join(c for c in alphabet if c not in excluded)
        value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
        template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
        if template and key:
            doc = json.loads(template)
            doc[key] = value
            return json.dumps(doc)
        return value

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SecretResource:
        props = _props(cloudformation_json)
        value = props.get("SecretString")
        if value is None and props.get("GenerateSecretString") is not None:
            value = cls._generate(props["GenerateSecretString"])
        backend = secretsmanager_backends[account_id][region_name]
        backend.create_secret(
            name=resource_name,
            secret_string=value,
            secret_binary=None,
            description=props.get("Description", ""),
            tags=props.get("Tags") or [],
            kms_key_id=props.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        return cls(backend.secrets[resource_name].arn, resource_name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: SecretResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> SecretResource:
        """Only the description is updated: a stack update never rotates a secret's value."""
        backend = secretsmanager_backends[account_id][region_name]
        secret = backend.secrets.get(original_resource.name)
        if secret is not None:
            secret.description = _props(cloudformation_json).get("Description", secret.description)
        return original_resource

    def delete(self, account_id: str, region_name: str) -> None:
        backend = secretsmanager_backends[account_id][region_name]
        backend.delete_secret(self.name, recovery_window_in_days=None, force_delete_without_recovery=True)


class AlarmResource(_Model, CloudFormationModel):
    """AWS::CloudWatch::Alarm (Ref = alarm name, GetAtt Arn)."""

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @classmethod
    def _put(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> AlarmResource:
        backend = cloudwatch_backends[account_id][region_name]
        alarm = backend.put_metric_alarm(
            name=name,
            namespace=props.get("Namespace"),
            metric_name=props.get("MetricName"),
            comparison_operator=props["ComparisonOperator"],
            evaluation_periods=_num(props["EvaluationPeriods"], int),
            datapoints_to_alarm=_num(props.get("DatapointsToAlarm"), int),
            period=_num(props.get("Period"), int),
            threshold=_num(props.get("Threshold")),
            statistic=props.get("Statistic"),
            extended_statistic=props.get("ExtendedStatistic"),
            description=props.get("AlarmDescription"),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in props.get("Dimensions") or []],
            alarm_actions=list(props.get("AlarmActions") or []),
            ok_actions=list(props.get("OKActions") or []),
            insufficient_data_actions=list(props.get("InsufficientDataActions") or []),
            unit=props.get("Unit"),
            actions_enabled=props.get("ActionsEnabled", True) not in (False, "false"),
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
        )
        return cls(alarm.name, alarm.alarm_arn)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> AlarmResource:
        return cls._put(resource_name, _props(cloudformation_json), account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: AlarmResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> AlarmResource:
        props = _props(cloudformation_json)
        name = props.get("AlarmName", original_resource.name)
        if name != original_resource.name:
            original_resource.delete(account_id, region_name)
        return cls._put(name, props, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


class SubscriptionResource(_Model, CloudFormationModel):
    """AWS::SNS::Subscription (Ref = subscription ARN)."""

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SubscriptionResource:
        props = _props(cloudformation_json)
        backend = sns_backends[account_id][region_name]
        sub = backend.subscribe(props["TopicArn"], props["Endpoint"], props["Protocol"])
        if props.get("RawMessageDelivery") in (True, "true"):
            backend.set_subscription_attributes(sub.arn, "RawMessageDelivery", "true")
        return cls(sub.arn)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: SubscriptionResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> SubscriptionResource:
        original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        sns_backends[account_id][region_name].unsubscribe(self.arn)


class ScalableTargetResource(_Model, CloudFormationModel):
    """AWS::ApplicationAutoScaling::ScalableTarget (Ref = `resource|dimension|namespace`, as AWS)."""

    def __init__(self, namespace: str, resource_id: str, dimension: str) -> None:
        self.namespace = namespace
        self.resource_id = resource_id
        self.dimension = dimension

    @property
    def physical_resource_id(self) -> str:
        return f"{self.resource_id}|{self.dimension}|{self.namespace}"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalableTarget"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScalableTargetResource:
        props = _props(cloudformation_json)
        backend = applicationautoscaling_backends[account_id][region_name]
        backend.register_scalable_target(
            namespace=props["ServiceNamespace"],
            r_id=props["ResourceId"],
            dimension=props["ScalableDimension"],
            min_capacity=_num(props.get("MinCapacity"), int),
            max_capacity=_num(props.get("MaxCapacity"), int),
            role_arn=props.get("RoleARN"),
            suspended_state=props.get("SuspendedState"),
        )
        return cls(props["ServiceNamespace"], props["ResourceId"], props["ScalableDimension"])

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: ScalableTargetResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> ScalableTargetResource:
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = applicationautoscaling_backends[account_id][region_name]
        backend.deregister_scalable_target(self.namespace, self.resource_id, self.dimension)


class ScalingPolicyResource(_Model, CloudFormationModel):
    """AWS::ApplicationAutoScaling::ScalingPolicy (Ref = policy ARN)."""

    def __init__(self, arn: str, name: str, namespace: str, resource_id: str, dimension: str) -> None:
        self.arn = arn
        self.name = name
        self.namespace = namespace
        self.resource_id = resource_id
        self.dimension = dimension

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "PolicyName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalingPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScalingPolicyResource:
        props = _props(cloudformation_json)
        if props.get("ScalingTargetId"):
            resource_id, dimension, namespace = str(props["ScalingTargetId"]).split("|")
        else:
            resource_id = props["ResourceId"]
            dimension = props["ScalableDimension"]
            namespace = props["ServiceNamespace"]
        body = props.get("TargetTrackingScalingPolicyConfiguration") or props.get(
            "StepScalingPolicyConfiguration"
        )
        backend = applicationautoscaling_backends[account_id][region_name]
        policy = backend.put_scaling_policy(
            policy_name=resource_name,
            service_namespace=namespace,
            resource_id=resource_id,
            scalable_dimension=dimension,
            policy_body=body,
            policy_type=props.get("PolicyType"),
        )
        return cls(policy.policy_arn, resource_name, namespace, resource_id, dimension)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: ScalingPolicyResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> ScalingPolicyResource:
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = applicationautoscaling_backends[account_id][region_name]
        backend.delete_scaling_policy(self.name, self.namespace, self.resource_id, self.dimension)


MODELS: tuple[type[CloudFormationModel], ...] = (
    SecretResource,
    AlarmResource,
    SubscriptionResource,
    ScalableTargetResource,
    ScalingPolicyResource,
)


def install() -> None:
    """Make moto's CloudFormation engine see the models (its discovery is cached on first use)."""
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
    known = parsing.get_model_map()
    missing = [m.cloudformation_type() for m in MODELS if known.get(m.cloudformation_type()) is not m]
    if missing:
        raise RuntimeError(f"moto did not pick up the CloudFormation models for {missing}")
    log.debug("CloudFormation models installed: %s", [m.cloudformation_type() for m in MODELS])
