"""Delivery of SNS messages to e-mail subscribers, into the local outbox.

moto 5.2.5 accepts e-mail subscriptions but delivers nothing to them. Here every message
published to a topic (by Publish, or by an alarm's action) is appended to
`<state-dir>/outbox.jsonl`, one JSON object per confirmed `email`/`email-json` subscription,
in the shape of the SNS notification: Type, MessageId, TopicArn, Subject, Message, Timestamp,
plus SubscriptionArn, Protocol and Endpoint so a reader can tell the recipients apart.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from moto.sns.models import Subscription

from .state import TWIN

log = logging.getLogger(__name__)

DELIVERED_PROTOCOLS = ("email", "email-json")
_original_publish = Subscription.publish


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _publish(
    self: Subscription, message: str, message_id: str, subject: str | None = None, *args: Any, **kwargs: Any
) -> None:
    _original_publish(self, message, message_id, subject, *args, **kwargs)
    if self.protocol not in DELIVERED_PROTOCOLS:
        return
    if str(self.attributes.get("PendingConfirmation", "false")).lower() == "true":
        log.info("not delivered to %s: subscription pending confirmation", self.endpoint)
        return
    TWIN.deliver(
        {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.topic.arn,
            "Subject": subject,
            "Message": message,
            "Timestamp": _timestamp(),
            "SubscriptionArn": self.arn,
            "Protocol": self.protocol,
            "Endpoint": self.endpoint,
        }
    )


def install() -> None:
    """Patch moto's SNS subscription delivery."""
    Subscription.publish = _publish  # type: ignore[method-assign]
