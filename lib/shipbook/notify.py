"""Deliver a planned notification: SNS topic and/or Slack-compatible webhook, with timeout, one retry, redacted.

Plan, then apply (design convention 3). `plan()` names the channels, checks a webhook against the
environment's rails and masks the text (the environment's secret values and the credential
patterns of `shipbook.redact`) before anything can leave the machine. `send()` delivers it; with
`dry_run` it only says where the text would go: no API call, no request.

A webhook's URL is a secret (its path is the credential): it is given by reference, read when
needed and never kept in a plan, a result or a log line — they show its scheme and host only.
Why urllib and not requests: urllib3 logs request paths at DEBUG. Why our own retry: the whole
policy is one retry after a pause on no answer, 429 or 5xx; a retry library would be more code.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipbook import aws, secretvalues
from shipbook.config import Environment, SecretRef
from shipbook.errors import InputError, ShipbookError
from shipbook.loopback import is_local
from shipbook.redact import Redactor

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds per webhook attempt
ATTEMPTS = 2  # one retry, for a timeout, a refused connection, 429 or 5xx
RETRY_DELAY = 2.0
SUBJECT_LIMIT = 99  # SNS: an ASCII subject shorter than 100 characters


@dataclass(frozen=True)
class Channel:
    """One destination: an SNS topic (name or ARN) or a webhook by reference. `key` names the setting it came from.

    `where` is what may be shown: the topic, or the webhook's scheme and host once the plan has read it;
    `problem` says why the channel cannot be used (found while planning, so a dry run shows it too).
    """

    kind: str  # "sns" | "webhook"
    key: str
    where: str
    ref: SecretRef | None = None
    problem: str = ""

    def describe(self) -> str:
        return f"SNS topic {self.where}" if self.kind == "sns" else self.where


@dataclass(frozen=True)
class Plan:
    """What `send` will deliver: the channels, the subject and the body, already through the redactor."""

    channels: tuple[Channel, ...]
    subject: str
    body: str
    redacted: bool = False


@dataclass(frozen=True)
class Delivery:
    """One channel after `send`. `where`: the topic's ARN or the webhook's scheme and host, never a URL's path."""

    channel: Channel
    where: str
    sent: bool = False
    dry_run: bool = False
    error: str = ""
    status: int = 0  # webhook: the last HTTP status (0: no answer)
    attempts: int = 0
    message_id: str = ""  # SNS
    receivers: tuple[str, ...] = ()  # SNS: confirmed subscriptions as protocol:endpoint

    @property
    def transient(self) -> bool:
        """A webhook that gave no answer, 429 or 5xx after the retry: the channel is down, not misconfigured."""
        return self.channel.kind == "webhook" and not self.sent and bool(self.attempts) and \
            (self.status == 0 or self.status == 429 or self.status >= 500)


def plan(env: Environment, subject: str, body: str, *, topic: str = "", topic_key: str = "",
         webhook: SecretRef | None = None, webhook_key: str = "", redactor: Redactor | None = None) -> Plan:
    """The notification for `topic` and/or `webhook`, masked first, then the subject made fit for SNS."""
    redactor = redactor or Redactor(secretvalues.collect(env))
    channels = []
    if topic:
        channels.append(Channel("sns", topic_key, topic))
    if webhook is not None:
        channels.append(_webhook_channel(env, webhook, webhook_key))
    subject = redactor.text(subject).encode("ascii", "replace").decode()[:SUBJECT_LIMIT]
    return Plan(tuple(channels), subject, redactor.text(body), redacted=True)


def _webhook_channel(env: Environment, ref: SecretRef, key: str) -> Channel:
    try:
        host = webhook_host(env, _webhook_url(env, ref, key), key)
    except ShipbookError as exc:
        return Channel("webhook", key, "webhook", ref, problem=str(exc))
    return Channel("webhook", key, f"webhook {host}", ref)


def _webhook_url(env: Environment, ref: SecretRef, key: str) -> str:
    url = secretvalues.read(env, ref).strip()
    if not url:
        raise InputError(key, f"{ref.describe()} is empty or not set")
    return url


def webhook_host(env: Environment, url: str, key: str = "precheck.share_webhook") -> str:
    """`scheme://host[:port]` of the webhook, after checking it may be used; InputError never shows the URL.

    Same rails as the environment's endpoints: the sandbox only talks to loopback, anything else only to
    an https URL that is not this machine.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(key, "the referenced value is not an http(s) URL")
    host = parts.hostname
    local = is_local(host)
    if env.is_sandbox and not local:
        raise InputError(key, f"the sandbox only talks to loopback, not to {host}")
    if not env.is_sandbox and (local or parts.scheme != "https"):
        raise InputError(key, f"a non-sandbox environment needs an https URL that is not loopback (got "
                         f"{parts.scheme}://{host})")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def send(env: Environment, p: Plan, *, dry_run: bool = True, sns: Any = None,
         sleep: Callable[[float], None] = time.sleep) -> list[Delivery]:
    """Deliver `p` to each of its channels; with `dry_run`, only say where it would go (nothing is read or sent).

    A channel that cannot be used fails alone: the others are still tried.
    """
    if not p.redacted:
        raise InputError("notification", "not redacted: build it with notify.plan()")
    out = []
    for channel in p.channels:
        if channel.problem:
            out.append(Delivery(channel, channel.where, error=channel.problem))
        elif dry_run:
            out.append(Delivery(channel, channel.where, dry_run=True))
        elif channel.kind == "sns":
            out.append(_publish(env, sns, channel, p))
        else:
            out.append(_post(env, channel, p, sleep))
    return out


def _publish(env: Environment, sns: Any, channel: Channel, p: Plan) -> Delivery:
    """Publish to the topic and list who receives it (confirmed subscriptions)."""
    try:
        sns = sns if sns is not None else aws.client(env, "sns")
        arn = topic_arn(sns, channel.where, channel.key)
        sent = aws.call(sns, "publish", TopicArn=arn, Subject=p.subject, Message=p.body)
        subs = aws.collect(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=arn)
    except ShipbookError as exc:
        return Delivery(channel, channel.where, error=str(exc))
    confirmed = tuple(f"{s.get('Protocol')}:{s.get('Endpoint')}" for s in subs
                      if not s.get("SubscriptionArn", "").startswith("Pending"))
    return Delivery(channel, arn, sent=True, message_id=str(sent.get("MessageId") or ""), receivers=confirmed)


def topic_arn(sns: Any, topic: str, key: str) -> str:
    """The topic's ARN: as given, or found by name among the account's topics."""
    if topic.startswith("arn:"):
        return topic
    for page in aws.pages(sns, "list_topics"):
        for t in page.get("Topics") or []:
            if t.get("TopicArn", "").rsplit(":", 1)[-1] == topic:
                return t["TopicArn"]
    raise InputError(key, f"SNS topic {topic!r} does not exist")


def _post(env: Environment, channel: Channel, p: Plan, sleep: Callable[[float], None]) -> Delivery:
    """POST the subject and body to the webhook, read again from its reference (a plan never holds the URL)."""
    try:
        if channel.ref is None:
            raise InputError(channel.key, "no webhook reference")
        url = _webhook_url(env, channel.ref, channel.key)
        webhook_host(env, url, channel.key)
    except ShipbookError as exc:
        return Delivery(channel, channel.where, error=str(exc))
    got = post_webhook(url, f"{p.subject}\n{p.body}", sleep=sleep)
    return Delivery(channel, channel.where, sent=got.ok, error=got.error, status=got.status, attempts=got.attempts)


@dataclass
class Answer:
    """What a webhook POST came to: the last HTTP status (0: no answer), the attempts, why it failed."""

    status: int = 0
    attempts: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to report, not to follow (it would re-send the text elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_webhook(url: str, text: str, *, timeout: float = TIMEOUT, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep) -> Answer:
    """POST `{"text": text}` (Slack-compatible) to `url`; retried once on no answer, 429 or 5xx.

    Nothing returned (status, error) contains the URL.
    """
    body = json.dumps({"text": text}).encode()
    opener = urllib.request.build_opener(_NoRedirect)
    out = Answer()
    for attempt in range(1, max(1, attempts) + 1):
        out.attempts = attempt
        request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (scheme checked by webhook_host)
                                         headers={"Content-Type": "application/json", "User-Agent": "shipbook"})
        try:
            with opener.open(request, timeout=timeout) as resp:
                out.status, out.error = resp.status, ""
                return out
        except urllib.error.HTTPError as exc:
            answer = exc.read(200).decode("utf-8", "replace").strip()
            exc.close()
            out.status, out.error = exc.code, _scrub(f"HTTP {exc.code}" + (f": {answer}" if answer else ""), url)
            if exc.code != 429 and exc.code < 500:
                return out
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            out.status, out.error = 0, _scrub(f"no answer: {type(reason).__name__}: {reason}", url)
        if attempt < attempts:
            log.info("webhook attempt %d failed (%s); retrying", attempt, out.error)
            sleep(RETRY_DELAY)
    return out


def _scrub(text: str, url: str) -> str:
    """`text` without the URL or its path (a webhook's secret part), in case an answer echoes them."""
    path = urllib.parse.urlsplit(url).path
    for secret in (url, url.strip(), path if len(path) > 1 else ""):
        if secret:
            text = text.replace(secret, "[webhook]")
    return text[:200]
