"""A small incident world for the notebook tests: release run records, fake AWS clients, a local app.

The story (times relative to T0, the incident's start, a fixed past moment):
- v0.9.0 deployed two days before; v1.0.0 (previous v0.9.0) deployed at T0-10 min; 5xx at 8 % and p99 at
  90 ms from then until T0+9 min; a separate `make rollback` run of v1.0.0 started at T0+8 min; v1.0.1
  deployed at T0+5 min (after the start: never the suspected version).
- CloudWatch: the watched alarm `demo-5xx` (topic `alarms`) is in ALARM, went OK → ALARM at T0-7 and
  ALARM → OK at T0+12; `other-team-alarm` (another topic) is in ALARM too and must be ignored.
- The app (a loopback HTTP server) serves v0.9.0 again: health 200, version, products.

Helpers, not tests: conftest files are fixtures only (see support.py).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
from matplotlib.figure import Figure
from shipbook import audit, config
from test_incident import FakeClient

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=20)  # the incident notebook runs 20 minutes after the start
DEPLOY = T0 - timedelta(minutes=10)
BAD_UNTIL = T0 + timedelta(minutes=9)
ROLLBACK = T0 + timedelta(minutes=8)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RELEASE_RUN = "20261120T144900Z-aaaaaa"
ROLLBACK_RUN = "20261120T150800Z-bbbbbb"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(t: datetime) -> str:
    return t.isoformat()


# ------------------------------------------------------------------ run records


def write_run(runs_root: Path, version: str, run_id: str, *, facts: dict | None = None,
              phases: list[dict] | None = None, previous_version: str = "", env: str = "t") -> Path:
    d = runs_root / env / version / run_id
    d.mkdir(parents=True)
    (d / audit.RECORD).write_text(json.dumps({
        "run_id": run_id, "env": env, "version": version, "previous_version": previous_version,
        "status": "succeeded", "phases": phases or [], "facts": facts or {}}), encoding="utf-8")
    return d


def phase(name: str, started: datetime, minutes: float = 2, status: str = "succeeded") -> dict:
    return {"name": name, "status": status, "verdict": "pass", "started": iso(started),
            "finished": iso(started + timedelta(minutes=minutes)), "blocking": [], "checks": []}


def release_history(runs_root: Path) -> None:
    """v0.9.0 two days ago, v1.0.0 at T0-10 (its rollback a run of its own at T0+8), v1.0.1 at T0+5."""
    write_run(runs_root, "v0.9.0", "20261118T150000Z-000000", previous_version="v0.8.0",
              facts={"deploy_started": iso(at(-2 * 24 * 60)), "deploy_finished": iso(at(-2 * 24 * 60 + 2))},
              phases=[phase("deploy", at(-2 * 24 * 60))])
    write_run(runs_root, "v1.0.0", RELEASE_RUN, previous_version="v0.9.0",
              facts={"deploy_started": iso(DEPLOY), "deploy_finished": iso(at(-8)), "release_commit": "c0ffee" * 7},
              phases=[phase("precheck", at(-11), 1), phase("deploy", DEPLOY), phase("verify", at(-8), 3)])
    write_run(runs_root, "v1.0.0", ROLLBACK_RUN, previous_version="v0.9.0", phases=[phase("rollback", ROLLBACK)])
    write_run(runs_root, "v1.0.1", "20261120T150500Z-cccccc", previous_version="v1.0.0",
              facts={"deploy_started": iso(at(5))}, phases=[phase("deploy", at(5))])


# ------------------------------------------------------------------ AWS fakes


def _bad(t: datetime) -> bool:
    return DEPLOY <= t < BAD_UNTIL


def metric_data(**kw: Any) -> dict:
    """GetMetricData of the target group: one point per period, 8 % 5xx and p99 90 ms while v1.0.0 is bad."""
    period = kw["MetricDataQueries"][0]["MetricStat"]["Period"]
    stamps = []
    t = kw["StartTime"]
    while t <= kw["EndTime"]:
        stamps.append(t)
        t += timedelta(seconds=period)
    values = {"requests": [100.0 for _ in stamps], "errors": [8.0 if _bad(s) else 0.0 for s in stamps],
              "p50": [0.01 for _ in stamps], "p95": [0.02 for _ in stamps],
              "p99": [0.09 if _bad(s) else 0.02 for s in stamps]}
    return {"MetricDataResults": [{"Id": q["Id"], "Timestamps": stamps, "Values": values[q["Id"]]}
                                  for q in kw["MetricDataQueries"]]}


ALARMS = [{"AlarmName": "demo-5xx", "AlarmActions": ["arn:aws:sns:ap-northeast-1:123456789012:alarms"],
           "StateValue": "ALARM"},
          {"AlarmName": "other-team-alarm", "AlarmActions": ["arn:aws:sns:ap-northeast-1:123456789012:other"],
           "StateValue": "ALARM"}]


def history_item(name: str, t: datetime, old: str, new: str, reason: str = "") -> dict:
    return {"AlarmName": name, "Timestamp": t, "HistoryItemType": "StateUpdate", "HistorySummary": f"{old}→{new}",
            "HistoryData": json.dumps({"oldState": {"stateValue": old},
                                       "newState": {"stateValue": new, "stateReason": reason}})}


def alarm_history(**kw: Any) -> dict:
    return {"AlarmHistoryItems": [
        history_item("demo-5xx", at(-7), "OK", "ALARM", "Threshold Crossed: 5xx > 5"),
        history_item("other-team-alarm", at(-6), "OK", "ALARM"),
        history_item("demo-5xx", at(12), "ALARM", "OK", "Threshold no longer crossed")]}


def log_events(**kw: Any) -> dict:
    def ev(minutes: float, body: dict | str) -> dict:
        return {"timestamp": int(at(minutes).timestamp() * 1000),
                "message": body if isinstance(body, str) else json.dumps(body)}
    trace = "Traceback (most recent call last):\n  File \"shop/views.py\", line 9\nKeyError: 'category'"
    return {"events": [
        ev(-9.5, {"level": "INFO", "message": "GET / 200", "method": "GET", "path": "/", "status": 200}),
        ev(-9, {"level": "ERROR", "message": "Internal Server Error: /products/14/", "exception": trace}),
        ev(-9, {"level": "ERROR", "message": "GET /products/14/ 500", "method": "GET", "path": "/products/14/",
                "status": 500, "duration_ms": 3.1}),
        ev(-4, {"level": "ERROR", "message": "GET /products/7/ 500", "method": "GET", "path": "/products/7/",
                "status": 500, "duration_ms": 2.9, "exception": trace}),
    ]}


def ecs_services(**kw: Any) -> dict:
    return {"services": [{"events": [
        {"createdAt": at(9), "message": "(service svc) has reached a steady state."},
        {"createdAt": at(-9.8), "message": "(service svc) has started 1 tasks: (task abc)."},
        {"createdAt": at(-180), "message": "too old for the window"}]}]}


def stack_events(**kw: Any) -> dict:
    return {"StackEvents": [
        {"Timestamp": at(8.5), "LogicalResourceId": "Service", "ResourceStatus": "UPDATE_COMPLETE"},
        {"Timestamp": at(-9.9), "LogicalResourceId": "Service", "ResourceStatus": "UPDATE_IN_PROGRESS",
         "ResourceStatusReason": "User Initiated"},
        {"Timestamp": at(-3000), "LogicalResourceId": "Vpc", "ResourceStatus": "CREATE_COMPLETE"}]}


def target_groups(**kw: Any) -> dict:
    return {"TargetGroups": [{
        "TargetGroupArn": "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup/tg/abc",
        "LoadBalancerArns": ["arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:loadbalancer/app/lb/def"]}]}


def clients() -> dict[str, FakeClient]:
    """One fake per service the incident and postmortem notebooks reach through `shipbook.aws.client`."""
    return {
        "cloudwatch": FakeClient("cloudwatch", get_metric_data=metric_data,
                                 describe_alarms=lambda **kw: {"MetricAlarms": ALARMS},
                                 describe_alarm_history=alarm_history),
        "elbv2": FakeClient("elasticloadbalancing", describe_target_groups=target_groups),
        "logs": FakeClient("logs", filter_log_events=log_events),
        "ecs": FakeClient("ecs", describe_services=ecs_services),
        "cloudformation": FakeClient("cloudformation", describe_stack_events=stack_events),
    }


# ------------------------------------------------------------------ an error spike, rolled back (issue 11)
#
# v1.0.0 was released twice: run A at 14:54:10 (healthy), run B at 14:59:10 (5 % of requests answer 500, 8.75 %
# in the minute 15:02), rolled back by its own pipeline (rollback phase 15:04:20-15:05:10, code back 15:04:31-44).
# At 15:04:31 one 1-second period holds 18 requests, 13 of them 5xx (72 %): it must never be a headline figure.
# The incident is opened at 15:05:30, after the rollback; 10-s periods of 80 requests, p99 20 ms (30 ms in the fault).

SPIKE_A = datetime(2026, 11, 28, 14, 54, 10, tzinfo=UTC)
SPIKE_B = datetime(2026, 11, 28, 14, 59, 10, tzinfo=UTC)
SPIKE_OPENED = datetime(2026, 11, 28, 15, 5, 30, tzinfo=UTC)
SPIKE_RUN_A = "20261128T145300Z-aaaaaa"
SPIKE_RUN_B = "20261128T145800Z-bbbbbb"


def hm(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 28, hour, minute, second, tzinfo=UTC)


def spike_metrics(end: datetime | None = None) -> Any:
    """The target group's metrics from 14:40 (10-s periods, the 1-s spike at 15:04:31), as fetch_metrics shapes them."""
    from shipbook import incident

    series: dict[str, dict] = {k: {} for k in ("requests", "errors", "p50", "p95", "p99")}
    t, end = hm(14, 40), end or hm(15, 10)
    while t < end:
        bad = SPIKE_B <= t < hm(15, 4, 30)
        series["requests"][t] = 80.0
        series["errors"][t] = (7.0 if hm(15, 2) <= t < hm(15, 3) else 4.0) if bad else 0.0
        series["p50"][t], series["p95"][t], series["p99"][t] = 0.01, 0.015, 0.03 if bad else 0.02
        t += timedelta(seconds=10)
    spike = hm(15, 4, 31)
    series["requests"][spike], series["errors"][spike] = 18.0, 13.0
    series["p50"][spike], series["p95"][spike], series["p99"][spike] = 0.01, 0.02, 0.04
    return incident.metrics_frame(series)


def spike_history(runs_root: Path, *, rollback: str = "succeeded") -> None:
    """v0.9.0 the day before; v1.0.0 run A (healthy) and run B (the fault; its rollback `rollback`, or none: "")."""
    write_run(runs_root, "v0.9.0", "20261127T100000Z-000000", previous_version="v0.8.0",
              facts={"deploy_started": iso(hm(10, 0) - timedelta(days=1))})
    write_run(runs_root, "v1.0.0", SPIKE_RUN_A, previous_version="v0.9.0",
              facts={"deploy_started": iso(SPIKE_A), "deploy_finished": iso(SPIKE_A + timedelta(seconds=40))},
              phases=[phase("deploy", SPIKE_A, 1), phase("verify", SPIKE_A + timedelta(minutes=1), 2)])
    facts = {"deploy_started": iso(SPIKE_B), "deploy_finished": iso(SPIKE_B + timedelta(seconds=40))}
    phases = [phase("deploy", SPIKE_B, 1), phase("verify", SPIKE_B + timedelta(minutes=1), 4)]
    if rollback:
        facts.update(rollback_tag="v1.0.1-rollback", rolled_back_to="v0.9.0", rollback_started=iso(hm(15, 4, 31)),
                     rollback_finished=iso(hm(15, 4, 44)))
        phases.append(phase("rollback", hm(15, 4, 20), 50 / 60, rollback))
    d = write_run(runs_root, "v1.0.0", SPIKE_RUN_B, previous_version="v0.9.0", facts=facts, phases=phases)
    if rollback == "succeeded":
        data = json.loads((d / audit.RECORD).read_text(encoding="utf-8"))
        (d / audit.RECORD).write_text(json.dumps({**data, "status": "rolled-back"}), encoding="utf-8")


def spike_clients(*, live_errors: float = 0.0, alarm: str = "OK") -> dict[str, FakeClient]:
    """CloudWatch now: `live_errors` 5xx per 80 requests in every period asked for, the 5xx alarm in `alarm`; its
    history: OK → ALARM at 15:01:30, back to OK at 15:05:20 (when `alarm` is OK)."""
    def live(**kw: Any) -> dict:
        period = kw["MetricDataQueries"][0]["MetricStat"]["Period"]
        stamps, t = [], kw["StartTime"]
        while t < kw["EndTime"]:
            stamps.append(t)
            t += timedelta(seconds=period)
        values = {"requests": 80.0, "errors": live_errors, "p50": 0.01, "p95": 0.015, "p99": 0.02}
        return {"MetricDataResults": [{"Id": q["Id"], "Timestamps": stamps, "Values": [values[q["Id"]]] * len(stamps)}
                                      for q in kw["MetricDataQueries"]]}

    def history(**kw: Any) -> dict:
        items = [history_item("demo-5xx", hm(15, 1, 30), "OK", "ALARM", "Threshold Crossed: 5xx > 5")]
        if alarm == "OK":
            items.append(history_item("demo-5xx", hm(15, 5, 20), "ALARM", "OK"))
        return {"AlarmHistoryItems": [i for i in items if kw["StartDate"] <= i["Timestamp"] <= kw["EndDate"]]}

    alarms = [{"AlarmName": "demo-5xx", "AlarmActions": ["arn:aws:sns:ap-northeast-1:123456789012:alarms"],
               "StateValue": alarm}]
    return {"cloudwatch": FakeClient("cloudwatch", get_metric_data=live, describe_alarms=lambda **kw: {
                "MetricAlarms": alarms}, describe_alarm_history=history),
            "elbv2": FakeClient("elasticloadbalancing", describe_target_groups=target_groups)}


# ------------------------------------------------------------------ the app, served on loopback


class _App(BaseHTTPRequestHandler):
    version = "v0.9.0"

    @property
    def pages(self) -> dict[str, tuple[int, str]]:
        return {"/health/": (200, '{"status": "ok"}'), "/version/": (200, json.dumps({"version": self.version})),
                "/products/": (200, '{"products": [{"id": 14}]}')}

    def do_GET(self) -> None:
        code, body = self.pages.get(self.path, (404, "not found"))
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """Quiet: the test output is not the app's access log."""


@contextlib.contextmanager
def app_server(version: str = "v0.9.0") -> Iterator[str]:
    """The app on loopback, serving `version` at /version/."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("App", (_App,), {"version": version}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def environment(public_url: str = "") -> config.Environment:
    smoke = (config.SmokeTestSection("/version/", text="{version}"),
             config.SmokeTestSection("/products/", text='"products"'))
    return config.Environment(
        name="t", kind="sandbox", lang="ja",
        contacts=(config.Contact("インフラ担当者", "伊藤", email="ito@example.invalid"),
                  config.Contact("開発リーダー", "Sato", phone="+81-3-0000-0000")),
        stack=config.StackSection(name="s", cluster="c", service="svc", target_group="tg", log_group="/ecs/web",
                                  alarm_topic="alarms"),
        app=config.AppSection(repo="/nonexistent", public_url=public_url), verify=config.VerifySection(smoke=smoke))


# ------------------------------------------------------------------ notebooks, cell by cell


@dataclass
class Shown:
    """What one cell showed: its index, the value of its last expression, and what it printed."""

    index: int
    value: Any
    stdout: str


@dataclass
class Page:
    """The executed notebook: markdown cells and outputs in order, and the namespace."""

    nb: Any
    items: list[tuple[int, str, Any]]  # (cell index, "markdown" | "output", markdown text | Shown)
    ns: dict[str, Any]

    def outputs(self) -> list[Shown]:
        return [x for _i, kind, x in self.items if kind == "output"]

    def position(self, predicate: Any) -> int:
        """The position (in `items`) of the first output whose value satisfies `predicate`."""
        found = [n for n, (_i, kind, x) in enumerate(self.items) if kind == "output" and predicate(x)]
        assert found, "no such output"
        return found[0]

    def heading_before(self, position: int, level: str) -> str:
        """The last markdown heading of `level` ("## " or "### ") above the item at `position`."""
        for _i, kind, text in reversed(self.items[:position]):
            if kind == "markdown":
                for line in text.splitlines():
                    if line.startswith(level):
                        return line[len(level):]
        return ""


def run_notebook(path: Path, params: dict[str, Any]) -> Page:
    """Execute a notebook's code cells in order in this process (magics dropped), like a kernel would:
    the last expression of a cell is its output, prints are captured, parameters follow the parameters cell."""
    nb = nbformat.read(path, as_version=4)
    ns: dict[str, Any] = {}
    items: list[tuple[int, str, Any]] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            items.append((i, "markdown", cell.source))
            continue
        if cell.cell_type != "code":
            continue
        src = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        tree = ast.parse(src)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, f"{path.name}[{i}]", "exec"), ns)  # the notebook under test
            value = eval(compile(ast.Expression(last.value), f"{path.name}[{i}]", "eval"), ns) if last else None
        if "parameters" in cell.metadata.get("tags", []):
            ns.update(params)
            continue
        items.append((i, "output", Shown(i, value, out.getvalue())))
    return Page(nb, items, ns)


def _bundle(value: Any) -> dict[str, str]:
    data = {"text/plain": repr(value)}
    if isinstance(value, Figure):
        buf = io.BytesIO()
        value.savefig(buf, format="png", dpi=50)
        data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
    for method, mime in (("_repr_html_", "text/html"), ("_repr_markdown_", "text/markdown")):
        shown = getattr(value, method)() if hasattr(value, method) else None
        if shown is not None:  # a Figure's _repr_html_ answers None outside the webagg backend
            data[mime] = shown
    return data


def executed_notebook(page: Page) -> Any:
    """The notebook with the outputs this process computed, as the runner would keep it."""
    nb = nbformat.from_dict(json.loads(json.dumps(page.nb)))
    for shown in page.outputs():
        outputs = []
        if shown.stdout:
            outputs.append(nbformat.v4.new_output("stream", name="stdout", text=shown.stdout))
        if shown.value is not None:
            outputs.append(nbformat.v4.new_output("execute_result", data=_bundle(shown.value),
                                                  execution_count=shown.index))
        nb.cells[shown.index].outputs = outputs
    return nb


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._open, self._text = tag, ""

    def handle_data(self, data):
        if self._open:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._open:
            self.found.append((tag, self._text.replace("¶", "").strip()))
            self._open = None


def headings(html: str) -> list[tuple[str, str]]:
    """(tag, text) of every h1/h2/h3 of a page, anchor marks left out."""
    parser = _Headings()
    parser.feed(html)
    return parser.found
