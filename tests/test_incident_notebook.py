"""incident.ipynb executed cell by cell in this process against fake AWS clients and a loopback app:
the sections come in the seed's order with what each must show, and the page renders its Japanese."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from incident_fakes import (
    NOTEBOOKS,
    NOW,
    RELEASE_RUN,
    ROLLBACK_RUN,
    T0,
    app_server,
    at,
    clients,
    environment,
    executed_notebook,
    headings,
    release_history,
    run_notebook,
)
from matplotlib.figure import Figure
from shipbook import aws, clock, config, incident
from shipbook.redact import Redactor
from shipbook.render import render_notebook

INCIDENT_ID = "inc-20261120T150000Z-abc123"
PREVENTION = ["5xx アラームの閾値を見直す", "カナリアで p99 を監視"]  # a blank line between them in the parameter


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The incident notebook run once for the module: (page, environment, fake clients, result.json)."""
    tmp = tmp_path_factory.mktemp("incident")
    runs = tmp / "runs"
    release_history(runs)
    fakes = clients()
    with pytest.MonkeyPatch.context() as mp, app_server() as url:
        env = environment(public_url=url)
        mp.setenv("SHIPBOOK_RUNS_DIR", str(runs))
        mp.setattr(aws, "client", lambda env, service: fakes[service])
        mp.setattr(incident, "utcnow", lambda: NOW)  # the notebook's cells
        mp.setattr(clock, "utcnow", lambda: NOW)  # the library's
        mp.setattr(config, "load", lambda name: env)
        mp.setenv("SHIPBOOK_WORK_DIR", str(tmp))
        page = run_notebook(NOTEBOOKS / "incident.ipynb", {
            "env": "t", "run_id": INCIDENT_ID, "incident_start": "2026-11-21T00:00:00+09:00",
            "title": "商品ページで 500 エラー", "lang": "", "prevention": "\n\n".join(PREVENTION)})
    result = json.loads((tmp / "result.json").read_text(encoding="utf-8"))
    return page, env, fakes, result


def _is_frame_with(*columns: str):
    return lambda shown: isinstance(shown.value, pd.DataFrame) and all(c in shown.value.columns for c in columns)


def test_the_sections_come_in_the_seed_order_with_what_each_must_show(executed):
    page, env, _fakes, _result = executed
    inc = page.ns["inc"]
    # opened: the start given in JST is UTC inside; the suspect is the last version deployed before the start
    # (v1.0.1 deployed after it), its rollback target from its run record
    assert (inc.id, inc.started, inc.version, inc.previous_version, inc.lang) == (
        INCIDENT_ID, T0, "v1.0.0", "v0.9.0", "ja")

    opened = page.position(lambda s: isinstance(s.value, pd.DataFrame) and "起票時刻" in s.value.iloc[:, 0].values)
    state = page.position(lambda s: isinstance(s.value, pd.DataFrame) and "現在提供中のバージョン" in
                          s.value.iloc[:, 0].values)
    contacts = page.position(_is_frame_with("役割", "氏名", "電話", "メール"))
    impact = page.position(lambda s: isinstance(s.value, pd.DataFrame) and "p99 baseline" in s.value.iloc[:, 0].values)
    impact_chart = page.position(lambda s: isinstance(s.value, Figure) and "障害の影響" in s.value.get_suptitle())
    notice = page.position(lambda s: isinstance(s.value, incident.Notice))
    exceptions = page.position(_is_frame_with("exception", "count", "first", "last"))
    deploys = page.position(_is_frame_with("version", "run_id", "minutes_before_incident"))
    ecs = page.position(lambda s: isinstance(s.value, pd.DataFrame) and list(s.value.columns) == incident.EVENT_COLUMNS)
    decisions = page.position(_is_frame_with("判断基準", "観測値", "基準", "該当"))
    command = page.position(lambda s: "ロールバックは実施済みです" in s.stdout)
    checks = page.position(_is_frame_with("id", "verdict", "summary"))
    prevention = page.position(_is_frame_with("再発防止策"))
    recorded = page.position(lambda s: "status report: shipbook status-report" in s.stdout)
    order = [opened, state, contacts, impact, impact_chart, notice, exceptions, deploys, ecs, decisions, command,
             checks, prevention, recorded]
    assert order == sorted(order) and len(set(order)) == len(order)

    sections = {name: page.heading_before(pos, "## ").split(" — ")[0] for name, pos in (
        ("contacts", contacts), ("impact", impact), ("notice", notice), ("exceptions", exceptions),
        ("deploys", deploys), ("ecs", ecs), ("decisions", decisions), ("command", command), ("checks", checks),
        ("prevention", prevention))}
    assert sections == {"contacts": "1. 初期対応（最初の30分）", "impact": "1. 初期対応（最初の30分）",
                        "notice": "1. 初期対応（最初の30分）", "exceptions": "2. 分析フェーズ（30分〜1時間）",
                        "deploys": "2. 分析フェーズ（30分〜1時間）", "ecs": "2. 分析フェーズ（30分〜1時間）",
                        "decisions": "3. 対応フェーズ（1時間〜）", "command": "3. 対応フェーズ（1時間〜）",
                        "checks": "4. 収束確認", "prevention": "4. 収束確認"}
    assert page.heading_before(opened, "### ").startswith("発生時刻") and page.heading_before(opened, "## ") == ""
    assert page.heading_before(state, "### ").startswith("現在の状況") and page.heading_before(state, "## ") == ""
    assert page.heading_before(contacts, "### ").startswith("緊急対応チームを招集")
    assert page.heading_before(impact, "### ").startswith("現象と影響範囲の特定")
    assert page.heading_before(notice, "### ").startswith("ユーザーへの初期通知")
    assert page.heading_before(decisions, "### ").startswith("ロールバック判断")

    # before anything: when it started (START given: the start; opened when the notebook ran) and the current state:
    # v1.0.0 was rolled back by a run of its own, v0.9.0 serves, the watched alarm still fires
    shown = dict(page.items[opened][2].value.values.tolist())
    assert (shown["発生時刻"], shown["起票時刻"]) == ("2026-11-20 15:00:00 UTC", "2026-11-20 15:20:00 UTC")
    assert shown["疑わしいデプロイ"] == "2026-11-20 14:50:00 UTC (run 20261120T144900Z-aaaaaa)"
    shown = dict(page.items[state][2].value.values.tolist())
    assert (shown["疑わしいバージョン"], shown["現在提供中のバージョン"]) == ("v1.0.0", "v0.9.0")
    assert shown["ロールバック"].endswith(f"run {ROLLBACK_RUN}, 15:08:00–15:10:00 UTC: succeeded")
    assert shown["収束確認（今）"] == "不合格: verify.alarms"
    assert shown["判定"].endswith("ですが、まだ収束していません: verify.alarms (in ALARM: demo-5xx)")

    # 1. first 30 minutes: contacts exactly as the environment file has them, nothing made up
    shown = page.items[contacts][2].value
    assert shown.values.tolist() == [["インフラ担当者", "伊藤", "—", "ito@example.invalid"],
                                     ["開発リーダー", "Sato", "+81-3-0000-0000", "—"]]
    values = dict(page.items[impact][2].value.values.tolist())
    # pooled per minute from the start to the last minute off the baseline (the rollback's recovery at T0+9)
    assert (values["影響期間"], values["リクエスト数"], values["5xx 件数"], values["5xx 率 (%)"]) == (
        "15:00–15:09 UTC", "900", "72", "8.0")
    assert values["最悪の1分"] == "最悪の1分 15:00 UTC に 8.0%（8/100 件）"
    assert values["p99 baseline"] == "20 ms" and values["p99 max (1分)"] == "90 ms"
    assert values["ALARM"] == "demo-5xx"  # the other team's alarm notifies another topic
    assert values["エンドポイント"] == "/products/{id}/"
    notice_text = str(page.items[notice][2].value)
    assert notice_text.startswith("**【障害のお知らせ】 商品ページで 500 エラー**")
    assert "2026-11-20 15:00:00 UTC 頃より" in notice_text and "/products/{id}/" in notice_text
    assert "リクエストの約 8.0% がエラーとなっています（最も多い1分で 8.0%）" in notice_text
    assert "次回の更新は 2026-11-20 15:50:00 UTC 頃" in notice_text  # 30 minutes after it was opened

    # 2. analysis: the exception, the deploys around the start (newest first), ECS events of the window
    assert page.items[exceptions][2].value["exception"].tolist() == ["KeyError: 'category'"]
    recent = page.items[deploys][2].value
    assert recent[["version", "minutes_before_incident"]].values.tolist() == [["v1.0.1", -5.0], ["v1.0.0", 10.0]]
    events = page.items[ecs][2].value
    assert events["time"].tolist() == [at(-9.8), at(9)] and "too old" not in " ".join(events["detail"])

    # 3. response: the criteria were met, but the release is already rolled back: no second rollback, what still
    # fails instead
    assert page.items[decisions][2].value["該当"].tolist() == ["はい", "はい", "要判断"]
    assert page.items[command][2].stdout.splitlines() == [
        "ロールバックは実施済みです（再実行は不要）。まだ失敗している項目を調べてください",
        "- 未解決: verify.alarms — in ALARM: demo-5xx", f"- 再確認: make incident INCIDENT={INCIDENT_ID} ENV=t",
        f"- 状況報告: shipbook status-report {INCIDENT_ID} --env t --lang ja"]
    assert "make rollback" not in "".join(s.stdout for s in page.outputs())

    # 4. convergence: the verify checks re-run now (the app serves v0.9.0 again), then the prevention items
    verdicts = dict(page.items[checks][2].value[["id", "verdict"]].values.tolist())
    assert verdicts == {"verify.health": "pass", "verify.version": "pass", "verify.smoke": "pass",
                        "verify.errors": "pass", "verify.performance": "pass", "verify.alarms": "fail"}
    assert page.items[prevention][2].value["再発防止策"].tolist() == PREVENTION
    assert f"shipbook status-report {INCIDENT_ID} --env t --lang ja" in page.items[recorded][2].stdout


def test_the_charts_mark_the_deploy_the_start_and_the_rollback(executed):
    page, _env, _fakes, _result = executed
    charts = [s.value for s in page.outputs() if isinstance(s.value, Figure)]
    assert len(charts) == 2
    impact, live = charts
    labels = [t.get_text() for t in impact.axes[0].texts]
    assert labels == ["deploy v1.0.0", "発生", "起票", "rollback v1.0.0"]
    assert live.get_suptitle() == "現在のメトリクス"
    # the impact chart covers the lookback window up to now: its 5xx line starts 30 minutes before the deploy
    xs = impact.axes[0].lines[0].get_xdata()
    assert pd.Timestamp(xs[0]) == pd.Timestamp(at(-40)) and pd.Timestamp(xs[-1]) <= pd.Timestamp(NOW)


def test_the_notebook_reaches_aws_only_for_the_window_and_records_its_facts(executed):
    page, _env, fakes, result = executed
    starts = [kw["StartTime"] for name, kw in fakes["cloudwatch"].calls if name == "get_metric_data"]
    assert starts == [at(-40), at(10)]  # the lookback window (from before the deploy), then the last 10 minutes
    (logs_call,) = fakes["logs"].calls
    assert logs_call[1]["logGroupName"] == "/ecs/web" and logs_call[1]["startTime"] == int(at(-40).timestamp() * 1000)
    assert fakes["ecs"].calls[0][1] == {"cluster": "c", "services": ["svc"]}
    facts = result["facts"]
    assert result["phase"] == "incident" and result["blocking"] == []  # an incident never blocks
    assert (facts["incident_id"], facts["suspected_version"], facts["rollback_target"]) == (
        INCIDENT_ID, "v1.0.0", "v0.9.0")
    assert facts["incident_start"] == "2026-11-20T15:00:00+00:00" and facts["incident_lang"] == "ja"
    assert facts["prevention_items"] == PREVENTION
    assert facts["decision"] == "ロールバックは実施済みです（再実行は不要）。まだ失敗している項目を調べてください"
    assert (facts["incident_opened"], facts["incident_start_basis"]) == ("2026-11-20T15:20:00+00:00", "given")
    assert (facts["suspected_deploy"], facts["suspected_deploy_run"]) == ("2026-11-20T14:50:00+00:00", RELEASE_RUN)
    assert facts["current_state"]["state"] == "rolled-back" and facts["current_state"]["failing"] == ["verify.alarms"]
    assert facts["current_state"]["rollback"]["run_id"] == ROLLBACK_RUN
    assert facts["impact"]["error_rate_peak"] == 8.0 and facts["impact"]["alarms"] == ["demo-5xx"]
    assert facts["impact"]["p99_baseline"] == 20.0  # measured before the deploy at T0-10, not before the start


def test_the_rendered_incident_page_keeps_its_japanese(executed, tmp_path):
    page, _env, _fakes, _result = executed
    paths = render_notebook(executed_notebook(page), tmp_path / "html", "incident", Redactor(), title="incident")
    raw = paths["stakeholder"].read_bytes()
    html = raw.decode("utf-8")  # strict: the page is UTF-8 throughout
    head = html[:html.index("</head>")]
    assert re.search(r'<meta charset="utf-8"\s*/?>', head, re.I)
    found = [text for tag, text in headings(html) if tag in ("h1", "h2")]
    assert [h.split(" — ")[0] for h in found] == [
        "Incident", "1. 初期対応（最初の30分）", "2. 分析フェーズ（30分〜1時間）", "3. 対応フェーズ（1時間〜）",
        "4. 収束確認"]
    # as characters, not entities or mojibake: the bytes are the UTF-8 of the words
    for words in ("初期対応（最初の30分）", "緊急対応チームを招集", "【障害のお知らせ】", "ロールバックは実施済みです",
                  "現在の状況", "再発防止策", "伊藤", "判断基準"):
        assert words.encode("utf-8") in raw, words
    assert "ã" not in html and "\ufffd" not in html
    assert "papermill_description" not in html and "data:image/png;base64," in html  # no code, the charts inline
