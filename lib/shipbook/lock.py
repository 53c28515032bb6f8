"""One release per environment at a time: a DynamoDB conditional write with owner, run id, expiry.

Why DynamoDB: the lock must hold across machines (two release managers), not just processes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shipbook import aws, clock
from shipbook.config import Environment
from shipbook.errors import AwsError, LockHeldError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lock:
    env: str
    owner: str
    run_id: str
    expires: datetime




class ReleaseLock:
    """Acquire/release the environment's lock. `client` and `now` are injectable for tests."""

    def __init__(self, env: Environment, client: Any | None = None, now: Callable[[], datetime] = clock.utcnow) -> None:
        self.env = env
        self.table = env.lock.table
        self.client = client or aws.client(env, "dynamodb")
        self.now = now

    def holder(self) -> Lock | None:
        item = aws.call(self.client, "get_item", TableName=self.table, Key={"env": {"S": self.env.name}},
                        ConsistentRead=True).get("Item")
        if not item:
            return None
        return Lock(self.env.name, item["owner"]["S"], item["run_id"]["S"],
                    datetime.fromtimestamp(int(item["expires"]["N"]), UTC))

    def acquire(self, owner: str, run_id: str) -> Lock:
        now = self.now()
        expires = now + timedelta(minutes=self.env.lock.ttl_minutes)
        try:
            aws.call(self.client, "put_item", TableName=self.table,
                     Item={"env": {"S": self.env.name}, "owner": {"S": owner}, "run_id": {"S": run_id},
                           "acquired": {"S": now.isoformat()}, "expires": {"N": str(int(expires.timestamp()))}},
                     ConditionExpression="attribute_not_exists(#e) OR #x < :now OR #r = :run",
                     ExpressionAttributeNames={"#e": "env", "#x": "expires", "#r": "run_id"},
                     ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}, ":run": {"S": run_id}})
        except AwsError as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise
            held = self.holder()
            if held is None:  # released between our write and our read: try once more
                return self.acquire(owner, run_id)
            raise LockHeldError(self.env.name, held.owner, held.run_id, held.expires.isoformat()) from exc
        log.info("lock acquired on %s for run %s", self.env.name, run_id)
        return Lock(self.env.name, owner, run_id, expires)

    def release(self, run_id: str) -> bool:
        """Release only our own lock; returns False when it was not ours (or already gone)."""
        try:
            aws.call(self.client, "delete_item", TableName=self.table, Key={"env": {"S": self.env.name}},
                     ConditionExpression="#r = :run", ExpressionAttributeNames={"#r": "run_id"},
                     ExpressionAttributeValues={":run": {"S": run_id}})
        except AwsError as exc:
            if exc.code == "ConditionalCheckFailedException":
                return False
            raise
        log.info("lock released on %s", self.env.name)
        return True

    def force_release(self) -> Lock | None:
        """Remove whatever lock is held (after a human confirmed). Returns what was removed."""
        held = self.holder()
        aws.call(self.client, "delete_item", TableName=self.table, Key={"env": {"S": self.env.name}})
        return held

    @contextlib.contextmanager
    def held(self, owner: str, run_id: str) -> Iterator[Lock]:
        """Hold the lock for the block; released on success, failure and Ctrl-C alike."""
        lock = self.acquire(owner, run_id)
        try:
            yield lock
        finally:
            self.release(run_id)
