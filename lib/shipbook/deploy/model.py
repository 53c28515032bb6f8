"""The records the deploy phase keeps: checks, observations and samples, all plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PHASE = "deploy"

# Check ids of the phase, in the order the checklist lists them.
VERSION = "release.version"
NOTES = "release.notes"
TAG = "release.tag"
WORKFLOW = "deploy.workflow"
CLOUDFORMATION = "deploy.cloudformation"
ECS = "deploy.ecs"
HEALTH = "deploy.health"
CHECK_IDS = (VERSION, NOTES, TAG, WORKFLOW, CLOUDFORMATION, ECS, HEALTH)

# The last line of a release tag's message: which run created it (lets a resumed deploy recognise its own tag).
RUN_TRAILER = "Shipbook-Run:"






@dataclass
class Event:
    """Something observed while deploying, with the time it happened (or was seen)."""

    time: datetime
    stage: str
    item: str
    status: str
    detail: str = ""
    url: str = ""


@dataclass
class EcsSample:
    """Running tasks of the release's deployment and of the others, at one poll."""

    time: datetime
    new_running: int
    old_running: int
    desired: int
    pending: int
    rollout: str


@dataclass
class HealthSample:
    """What the load balancer and the public URL said at one poll."""

    time: datetime
    healthy_targets: int | None
    total_targets: int | None
    health_status: int | None
    served_version: str
    ok: bool
