"""The environment file's sections as frozen dataclasses: every key, its type and its default."""

from __future__ import annotations

from dataclasses import dataclass, field

SANDBOX_ACCOUNT = "123456789012"
# The emulator accepts any credentials; these dummies are the documented moto ones, not a secret.
SANDBOX_CREDENTIAL = "testing"



@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. Exactly one of the three is set."""

    secretsmanager: str = ""
    ssm: str = ""
    env: str = ""

    def describe(self) -> str:
        if self.secretsmanager:
            return f"secretsmanager:{self.secretsmanager}"
        if self.ssm:
            return f"ssm:{self.ssm}"
        return f"env:{self.env}"


@dataclass(frozen=True)
class AwsSection:
    region: str = "ap-northeast-1"
    profile: str = ""
    endpoint_url: str = ""
    account_id: str = ""


@dataclass(frozen=True)
class LockSection:
    table: str = "shipbook-locks"
    ttl_minutes: int = 120


@dataclass(frozen=True)
class GithubSection:
    repository: str = ""
    api_url: str = ""  # empty: https://api.github.com
    remote: str = "origin"
    token: SecretRef | None = None
    workflow: str = "deploy.yml"


@dataclass(frozen=True)
class AppSection:
    repo: str = "."
    public_url: str = ""
    health_path: str = "/health/"
    version_path: str = "/version/"
    test_command: str = "python manage.py test"
    notes_file: str = "RELEASE_NOTES.md"
    python: str = ""  # the app's interpreter (tests, migration probe); "" = shipbook's own
    settings_module: str = ""  # DJANGO_SETTINGS_MODULE; "" = the one manage.py sets


@dataclass(frozen=True)
class StackSection:
    name: str = ""
    cluster: str = ""
    service: str = ""
    container: str = "web"
    target_group: str = ""
    db_instance: str = ""
    log_group: str = ""
    alarm_topic: str = ""


@dataclass(frozen=True)
class RunnerSection:
    cell_timeout: int = 3600
    phases: tuple[str, ...] = ("precheck", "backup", "deploy", "verify", "report")
    runs_url: str = ""
    kernel_name: str = "python3"


@dataclass(frozen=True)
class DeploySection:
    """Deadlines (seconds from the tag push) and polling of the deploy watchers."""

    workflow_timeout: float = 1800.0
    stack_timeout: float = 1800.0
    ecs_timeout: float = 1800.0
    health_timeout: float = 2100.0
    run_appear_timeout: float = 120.0
    deployment_appear_timeout: float = 120.0
    poll_initial: float = 2.0
    poll_max: float = 15.0
    heartbeat: float = 5.0
    max_calls: int = 1000
    healthy_streak: int = 2
    after_failure: float = 30.0


@dataclass(frozen=True)
class BackupSection:
    pattern: str = "pre-deploy-{version}-{date}"
    keep: int = 5
    timeout_minutes: int = 60


@dataclass(frozen=True)
class HealthCheckSection:
    """The target group's health check as the environment expects it (`infra.alb`).

    Only the keys given are compared: an unset key (None, or "" for the matcher) is shown, not judged.
    Without a matcher, 200 must be one of the target group's success codes, as before this key existed.
    """

    matcher: str = ""  # success codes exactly as the target group has them: "200", "200,302", "200-299"
    interval: int | None = None  # seconds between probes
    timeout: int | None = None  # seconds a probe may take
    healthy_threshold: int | None = None  # consecutive successes before a target is healthy
    unhealthy_threshold: int | None = None  # consecutive failures before it is unhealthy


@dataclass(frozen=True)
class PrecheckSection:
    """Thresholds and expectations of the pre-checks (code.*, db.*, env.*, iam.*, network.*, infra.*)."""

    test_timeout: float = 600.0
    tool_timeout: float = 300.0
    required_approvals: int = 1
    bandit_block_severity: str = "HIGH"  # LOW|MEDIUM|HIGH: findings at or above block
    bandit_min_confidence: str = "LOW"  # below: listed, never counted
    ruff_max_findings: int = 0  # more block; up to this many warn
    migration_sample_rows: int = 5000  # the small sample is a fifth of it
    migration_warn_seconds: float = 60.0
    migration_fail_seconds: float = 0.0  # 0 = never blocks
    probe_timeout: float = 300.0  # capped at 0.75 x runner.cell_timeout
    db_row_counts: dict[str, int] = field(default_factory=dict)  # table -> production rows
    # env.variables: what the task definition must define (secrets by reference)
    required_variables: tuple[str, ...] = ("SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS")
    # network.security_groups: `<alb|app|db> <protocol>/<port[-port]|container> <world|alb|app|db|CIDR>`
    allowed_ingress: tuple[str, ...] = ("alb tcp/80 world", "alb tcp/443 world", "app tcp/container alb",
                                        "db tcp/5432 app")
    deploy_role: str = "{stack}-deploy"  # iam.ecr_push: role name or ARN; {stack} = stack.name
    health_check: HealthCheckSection = field(default_factory=HealthCheckSection)  # infra.alb
    # code.shared: where the pre-check summary goes. The topic is an SNS name or ARN ("" = stack.alarm_topic);
    # the webhook (Slack-compatible JSON POST) is a secret, so by reference only and never printed.
    share_topic: str = ""
    share_webhook: SecretRef | None = None


@dataclass(frozen=True)
class SmokeTestSection:
    path: str
    method: str = "GET"
    status: int = 200
    text: str = ""  # "{version}" is filled in
    name: str = ""


@dataclass(frozen=True)
class VerifySection:
    """Windows, tolerances and smoke tests of the verify phase and its judge."""

    baseline_seconds: int = 1800
    canary_seconds: int = 1800
    period: int = 60
    settle_seconds: int = 120
    publish_lag_seconds: int = 180
    alpha: float = 0.01
    min_points: int = 10
    latency_tolerance: float = 0.20
    latency_floor_ms: float = 5.0
    error_rate_tolerance: float = 0.005
    cpu_tolerance: float = 0.5
    cpu_floor: float = 10.0
    memory_tolerance: float = 0.25
    memory_floor: float = 5.0
    min_traffic_ratio: float = 0.5
    no_data: str = "inconclusive"  # inconclusive | fail | ignore
    smoke: tuple[SmokeTestSection, ...] = ()
    alarms: tuple[str, ...] = ()
    log_filter: str = "?ERROR ?CRITICAL ?Traceback ?Exception"
    max_log_events: int = 20000
    fatal_signature_per_minute: float = 10.0  # a NEW error signature at this rate … (0: off)
    fatal_signature_seconds: int = 300  # … in every bucket for this long is a fatal bug
    fatal_signature_bucket_seconds: int = 60
    http_timeout: float = 10.0
    tls_warn_days: int = 21


@dataclass(frozen=True)
class RollbackSection:
    tag_pattern: str = "{next_patch}-rollback"
    db_swap: str = "rename"  # rename | secret
    database_url_name: str = "DATABASE_URL"
    migrate_timeout: float = 1800.0
    restore_timeout: float = 3600.0
    poll: float = 5.0


@dataclass(frozen=True)
class IncidentSection:
    """How 5xx rates are pooled for headline figures: an incident's impact and onset, a rollback's own window."""

    pool_seconds: int = 60  # 5xx rate and p99 pooled per minute (a multiple of verify.period) …
    min_requests: int = 50  # … and a pool with fewer requests never sets a headline figure


@dataclass(frozen=True)
class ReportSection:
    known_issues: tuple[str, ...] = ()
    next_release: str = ""


@dataclass(frozen=True)
class Contact:
    role: str
    name: str
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class Environment:
    """The validated environment. Frozen: loaded once, passed everywhere."""

    name: str
    kind: str = "aws"  # "sandbox" or "aws"
    lang: str = "ja"
    auto_rollback: bool = False
    aws: AwsSection = field(default_factory=AwsSection)
    lock: LockSection = field(default_factory=LockSection)
    github: GithubSection = field(default_factory=GithubSection)
    app: AppSection = field(default_factory=AppSection)
    stack: StackSection = field(default_factory=StackSection)
    runner: RunnerSection = field(default_factory=RunnerSection)
    deploy: DeploySection = field(default_factory=DeploySection)
    backup: BackupSection = field(default_factory=BackupSection)
    precheck: PrecheckSection = field(default_factory=PrecheckSection)
    verify: VerifySection = field(default_factory=VerifySection)
    rollback: RollbackSection = field(default_factory=RollbackSection)
    report: ReportSection = field(default_factory=ReportSection)
    incident: IncidentSection = field(default_factory=IncidentSection)
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    contacts: tuple[Contact, ...] = ()
    source: str = ""

    @property
    def is_sandbox(self) -> bool:
        return self.kind == "sandbox"

    def process_env(self) -> dict[str, str]:
        """Variables for shipbook's own child processes and kernels (never the user's shell)."""
        out = {"SHIPBOOK_ENV": self.name, "AWS_DEFAULT_REGION": self.aws.region}
        if self.aws.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.aws.endpoint_url
        if self.is_sandbox:
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                out[var] = SANDBOX_CREDENTIAL
        if self.aws.profile:
            out["AWS_PROFILE"] = self.aws.profile
        if self.github.api_url:
            out["GITHUB_API_URL"] = self.github.api_url
        return out


