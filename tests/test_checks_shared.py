"""code.shared: the pre-check summary to an SNS topic (moto) and a webhook (a real HTTP server on loopback).

The webhook's URL is a secret (its path is the credential): it is given by reference, and no part of
the check's result, nor any log line, may show more than its scheme and host.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nbformat
import pytest
from shipbook import checks, config, notify
from shipbook.checks import code
from shipbook.config import AwsSection, Environment, PrecheckSection, RunnerSection, SecretRef, StackSection
from shipbook.errors import ConfigError, InputError
from shipbook.phases import NOTEBOOK_DIR
from support import aws_client, free_port

SECRET_PATH = "/services/T0SHIP/B0BOOK/xoxb-s3cr3t-w3bh00k-t0k3n"
VAR = "SHIPBOOK_TEST_SHARE_WEBHOOK"
BY_REFERENCE = SecretRef(env=VAR)


class Hook:
    """A webhook receiver: records every request and answers from a script of statuses (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.echo_path = False
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.requests.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                      "body": json.loads(body)})
                status = hook.script.pop(0) if hook.script else 200
                answer = (f"no_service for {self.path}" if hook.echo_path else "ok").encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def hook_server():
    hook = Hook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()
    thread.join(5)


@pytest.fixture
def hook(hook_server, monkeypatch):
    hook_server.requests.clear()
    hook_server.script.clear()
    hook_server.echo_path = False
    monkeypatch.setenv(VAR, hook_server.url)
    return hook_server


def _env(name: str = "prod", *, kind: str = "sandbox", topic: str = "", alarm_topic: str = "", runs_url: str = "",
         webhook: SecretRef | None = BY_REFERENCE, moto_url: str = "") -> Environment:
    return Environment(name=name, kind=kind, aws=AwsSection(endpoint_url=moto_url),
                       stack=StackSection(alarm_topic=alarm_topic), runner=RunnerSection(runs_url=runs_url),
                       precheck=PrecheckSection(share_topic=topic, share_webhook=webhook))


RESULTS = [checks.CheckResult("code.tests", "pass", "12 tests"),
           checks.CheckResult("code.review", "fail", "1 commit(s) reached the branch without a reviewed pull request"),
           checks.CheckResult("infra.alb", "manual", "confirm the listener")]


def _release(tmp_path) -> checks.Release:
    return checks.Release(str(tmp_path), "v1.2.0", "c" * 40, "tag v1.2.0")


def _share(env: Environment, release: checks.Release, results, *, run_id: str, runs_root=None, sleep=None,
           dry_run: bool = False) -> checks.CheckResult:
    """`code.shared` as the notebook runs it: the plan (one cell), then `send_summary` (the next)."""
    plan = code.shared(env, release, results, run_id=run_id, runs_root=runs_root)
    return code.send_summary(env, plan, dry_run=dry_run, **({"sleep": sleep} if sleep else {}))


def _shown(res: checks.CheckResult) -> str:
    """Everything the check hands over (summary, details, evidence), as the runner would record it."""
    return json.dumps({"summary": res.summary, "details": res.details, "evidence": res.evidence}, ensure_ascii=False)


def _no_secret(res: checks.CheckResult, hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    shown = _shown(res) + "\n".join(r.getMessage() for r in caplog.records)
    for part in (hook.url, SECRET_PATH, "xoxb-s3cr3t", "B0BOOK"):
        assert part not in shown


# --------------------------------------------------------------------------- the webhook


def test_webhook_gets_the_summary_as_json_and_its_url_is_never_shown(hook, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    env = _env(runs_url="s3://team-runs/releases")
    res = _share(env, _release(tmp_path), RESULTS, run_id="RUN7", runs_root=tmp_path / "runs")
    assert res.verdict == "pass", res.summary
    [got] = hook.requests
    assert got["path"] == SECRET_PATH and got["type"] == "application/json"
    assert list(got["body"]) == ["text"]  # Slack-compatible: {"text": "..."}
    text = got["body"]["text"]
    mirror = "s3://team-runs/releases/prod/v1.2.0/RUN7/01_precheck.stakeholder.html"
    assert text.startswith("[shipbook] precheck v1.2.0 on prod: 1 fail, 0 warn\n")
    assert "verdicts: 1 fail, 1 manual, 1 pass" in text
    assert "blocking: code.review" in text and "needs a sign-off: infra.alb" in text
    assert f"report mirror (uploaded when the run ends): {mirror}" in text
    assert f"report (written when the phase ends): {tmp_path / 'runs/prod/v1.2.0/RUN7/01_precheck.stakeholder.html'}" \
        in text
    assert "[fail] code.review: 1 commit(s) reached the branch" in text
    row = res.details[-1]
    assert row == {"what": "summary (webhook)", "where": f"webhook {hook.host}",
                   "detail": "HTTP 200 after 1 attempt(s)", "verdict": "pass"}
    assert res.summary == f"summary sent to webhook {hook.host} (HTTP 200); report will be at {mirror} " \
                          "(uploaded when the run ends)"
    assert f"env:{VAR}" in res.evidence and "never shown" in res.evidence
    # "will be": the report and its mirror are announced, not claimed
    assert [r["detail"] for r in res.details[:2]] == ["will be written by the runner when this phase ends",
                                                      "will be uploaded by the runner when the run ends "
                                                      "(runner.runs_url)"]
    _no_secret(res, hook, caplog)


def test_webhook_is_retried_once(hook, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    slept: list[float] = []
    hook.script[:] = [503]
    res = _share(_env(), _release(tmp_path), RESULTS, run_id="R", runs_root=tmp_path, sleep=slept.append)
    assert res.verdict == "pass", res.summary
    assert len(hook.requests) == 2 and slept == [notify.RETRY_DELAY]
    assert res.details[-1]["detail"] == "HTTP 200 after 2 attempt(s)"
    _no_secret(res, hook, caplog)


def test_webhook_down_needs_a_sign_off_and_a_refusal_fails_without_showing_the_url(hook, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    hook.script[:] = [503, 502]
    down = _share(_env(), _release(tmp_path), RESULTS, run_id="R", runs_root=tmp_path, sleep=lambda s: None)
    assert down.verdict == "manual" and len(hook.requests) == 2
    assert down.summary.startswith(f"summary not sent; webhook {hook.host} did not take the summary (HTTP 502: ok): "
                                   "share the report by hand, then sign off")
    hook.requests.clear()
    hook.script[:] = [404]
    hook.echo_path = True  # the answer repeats the secret path: it must not reach the result
    gone = _share(_env(), _release(tmp_path), RESULTS, run_id="R", runs_root=tmp_path, sleep=lambda s: None)
    assert gone.verdict == "fail" and len(hook.requests) == 1  # a 4xx is not retried
    assert "HTTP 404: no_service for [webhook]" in gone.summary and "fix precheck.share_webhook" in gone.summary
    _no_secret(down, hook, caplog)
    _no_secret(gone, hook, caplog)


def test_webhook_without_an_answer(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"  # nothing listens there
    monkeypatch.setenv(VAR, url)
    slept: list[float] = []
    res = _share(_env(), _release(tmp_path), [], run_id="R", runs_root=tmp_path, sleep=slept.append)
    assert res.verdict == "manual" and "no answer: ConnectionRefusedError" in res.summary
    assert res.details[-1]["detail"].startswith("not delivered after 2 attempt(s)") and slept == [2.0]
    assert SECRET_PATH not in _shown(res)


def test_webhook_reference_unset_or_not_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    unset = _share(_env(), _release(tmp_path), [], run_id="R", runs_root=tmp_path)
    assert unset.verdict == "fail"
    assert f"the webhook could not be used: precheck.share_webhook: env:{VAR} is empty or not set" in unset.summary
    monkeypatch.setenv(VAR, "https://hooks.example.com" + SECRET_PATH)
    outside = _share(_env(), _release(tmp_path), [], run_id="R", runs_root=tmp_path)
    assert outside.verdict == "fail"
    assert "the sandbox only talks to loopback, not to hooks.example.com" in outside.summary
    assert SECRET_PATH not in _shown(outside)
    prod = Environment(name="p", kind="aws")
    assert notify.webhook_host(prod, "https://user:pw@hooks.example.com:8443" + SECRET_PATH) == \
        "https://hooks.example.com:8443"
    for bad, reason in (("http://hooks.example.com/x", "needs an https URL"), ("https://127.0.0.1/x", "not loopback"),
                        ("hooks.example.com/x", "not an http(s) URL"), ("ftp://h/x", "not an http(s) URL")):
        with pytest.raises(InputError, match=re.escape(reason)) as err:
            notify.webhook_host(prod, bad)
        assert "/x" not in str(err.value)


# --------------------------------------------------------------------------- SNS, both, neither


def test_share_topic_wins_over_the_alarm_topic_and_both_destinations_get_it(hook, moto_url, tmp_path, caplog):
    sns, sqs = aws_client(moto_url, "sns"), aws_client(moto_url, "sqs")
    share = sns.create_topic(Name="release-news")["TopicArn"]
    sns.create_topic(Name="pager-alarms")
    queue = sqs.create_queue(QueueName="release-news-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=share, Protocol="sqs", Endpoint=queue_arn)
    env = _env(topic="release-news", alarm_topic="pager-alarms", moto_url=moto_url)
    res = _share(env, _release(tmp_path), RESULTS, run_id="R2", runs_root=tmp_path / "runs")
    assert res.verdict == "pass", res.summary
    body = json.loads(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"])
    assert body["Subject"] == "[shipbook] precheck v1.2.0 on prod: 1 fail, 0 warn"
    assert body["Message"] == hook.requests[0]["body"]["text"].split("\n", 1)[1]  # the same summary to both
    sns_row, hook_row = res.details[-2:]
    assert sns_row["where"] == share and sns_row["detail"].startswith(f"MessageId {body['MessageId']}; 1 confirmed")
    assert hook_row["where"] == f"webhook {hook.host}" and hook_row["verdict"] == "pass"
    assert res.summary.startswith(f"summary sent to SNS topic release-news (1 confirmed subscriber(s)) and webhook "
                                  f"{hook.host} (HTTP 200); report will be at {tmp_path / 'runs'}")
    assert "(written when this phase ends; not mirrored)" in res.summary
    assert "precheck.share_topic" in res.evidence
    _no_secret(res, hook, caplog)


def test_a_dry_run_plans_and_shows_but_sends_nothing(hook, moto_url, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    sns, sqs = aws_client(moto_url, "sns"), aws_client(moto_url, "sqs")
    topic = sns.create_topic(Name="dry-news")["TopicArn"]
    queue = sqs.create_queue(QueueName="dry-news-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    token = "s3cr3t-db-passw0rd"  # a secret value that reached a check's summary: masked in the plan
    monkeypatch.setenv("SHIPBOOK_TEST_DB_PASSWORD", token)
    env = dataclasses.replace(_env(topic="dry-news", moto_url=moto_url),
                              secrets={"db": SecretRef(env="SHIPBOOK_TEST_DB_PASSWORD")})
    results = [*RESULTS, checks.CheckResult("env.variables", "fail", f"DATABASE_URL holds {token} in plain text")]
    plan = code.shared(env, _release(tmp_path), results, run_id="R3", runs_root=tmp_path / "runs")
    shown = repr(plan) + plan._repr_html_()
    assert plan.notification.redacted and token not in plan.notification.body and "***" in plan.notification.body
    assert [(c.kind, c.where) for c in plan.notification.channels] == [("sns", "dry-news"),
                                                                       ("webhook", f"webhook {hook.host}")]
    assert "the summary goes to SNS topic dry-news and webhook " in shown and plan.notification.subject in shown
    assert token not in shown and SECRET_PATH not in shown
    res = code.send_summary(env, plan, dry_run=True)
    assert hook.requests == []
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    assert res.verdict == "skip", res.summary
    assert res.summary.startswith(f"dry run: nothing sent; would send the summary to SNS topic dry-news and webhook "
                                  f"{hook.host}; report will be at ")
    assert [r["verdict"] for r in res.details[-2:]] == ["skip", "skip"]
    assert res.evidence.startswith("dry run, not done: SNS Publish to dry-news (precheck.share_topic; subject: ")
    assert "; dry run, not done: webhook POST" in res.evidence
    _no_secret(res, hook, caplog)
    sent = code.send_summary(env, plan, dry_run=False)  # the same plan, applied
    assert sent.verdict == "pass" and len(hook.requests) == 1 and token not in hook.requests[0]["body"]["text"]
    assert json.loads(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"])["Subject"] == \
        plan.notification.subject


def test_a_dry_run_with_a_misconfigured_webhook_still_fails(tmp_path, monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    res = _share(_env(), _release(tmp_path), [], run_id="R", runs_root=tmp_path, dry_run=True)
    assert res.verdict == "fail" and "is empty or not set" in res.summary


def test_the_precheck_notebook_sends_in_its_own_cell_after_the_plan_and_before_the_gate():
    cells = [c for c in nbformat.read(NOTEBOOK_DIR / "01_precheck.ipynb", as_version=4).cells if c.cell_type == "code"]
    sources = [c.source for c in cells]
    plan = next(i for i, s in enumerate(sources) if "code.shared(" in s)
    send = next(i for i, s in enumerate(sources) if "code.send_summary(" in s)
    gate = next(i for i, s in enumerate(sources) if "result.gate(" in s)
    assert plan < send < gate and "dry_run" not in sources[plan]
    assert "code.send_summary(ENV, SHARE, dry_run=dry_run)" in sources[send]


def test_the_alarm_topic_still_serves_when_no_share_topic_is_set(moto_url, tmp_path):
    sns = aws_client(moto_url, "sns")
    arn = sns.create_topic(Name="legacy-alarms")["TopicArn"]
    env = _env(alarm_topic="legacy-alarms", webhook=None, moto_url=moto_url)
    res = _share(env, _release(tmp_path), [], run_id="R", runs_root=tmp_path)
    assert res.verdict == "warn" and res.details[-1]["where"] == arn  # nobody subscribed: sent, but warn
    assert "nobody is subscribed to legacy-alarms" in res.summary and "stack.alarm_topic" in res.evidence
    by_arn = _share(_env(topic=arn, webhook=None, moto_url=moto_url), _release(tmp_path), [], run_id="R",
                         runs_root=tmp_path)
    assert by_arn.details[-1]["where"] == arn


def test_nothing_configured_warns_clearly(tmp_path):
    bare = _share(_env(webhook=None), _release(tmp_path), RESULTS, run_id="R", runs_root=tmp_path / "runs")
    assert bare.verdict == "warn"
    assert bare.summary.startswith("nothing is shared: no report mirror (runner.runs_url) and no summary destination")
    assert str(tmp_path / "runs/prod/v1.2.0/R/01_precheck.stakeholder.html") in bare.summary
    mirrored = _share(_env(webhook=None, runs_url="s3://b/p"), _release(tmp_path), RESULTS, run_id="R")
    assert mirrored.verdict == "warn"
    assert mirrored.summary.startswith("the report will be mirrored to s3://b/p/prod/v1.2.0/R/01_precheck."
                                       "stakeholder.html when the run ends, but nobody is told")


# --------------------------------------------------------------------------- the keys


def _load(tmp_path, text: str) -> config.Environment:
    path = tmp_path / "e.toml"
    path.write_text('kind = "aws"\n[precheck]\n' + text, encoding="utf-8")
    return config.load_file(path, sandbox_dir=tmp_path / "none")


def test_share_keys_are_validated(tmp_path):
    env = _load(tmp_path, 'share_topic = "arn:aws:sns:ap-northeast-1:111122223333:release-news"\n'
                          'share_webhook = { ssm = "/team/slack-webhook" }\n')
    assert env.precheck.share_webhook == SecretRef(ssm="/team/slack-webhook")
    assert _load(tmp_path, "").precheck.share_webhook is None and _load(tmp_path, "").precheck.share_topic == ""
    for text, reason in (('share_webhook = "https://hooks.slack.com/services/T/B/X"\n', "by reference only"),
                         ('share_webhook = { env = "A", ssm = "/b" }\n', "exactly one"),
                         ('share_topic = "release news"\n', "expected an SNS topic name or arn"),
                         ('share_topic = "arn:aws:sqs:ap-northeast-1:111122223333:q"\n', "expected an SNS topic")):
        with pytest.raises(ConfigError, match=reason) as err:
            _load(tmp_path, text)
        assert "precheck.share_" in str(err.value) and "hooks.slack.com" not in str(err.value)


def test_the_webhook_url_is_among_the_values_masked_under_runs(hook):
    from shipbook import secretvalues

    assert hook.url in secretvalues.collect(_env())  # the webhook given by reference (BY_REFERENCE)
