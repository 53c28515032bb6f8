"""Japanese and English strings of the reports (completion report, incident, status, postmortem).

Why one table: the team's checklist is Japanese and some stakeholders read English; each
report takes `lang` ("ja" or "en", default the environment's `lang`) and every label comes
from here, so the two languages cannot drift apart field by field. The five fields of a status
report are the seed's, in its order.
"""

from __future__ import annotations

from shipbook.errors import InputError

LANGS = ("ja", "en")

# The seed's stakeholder report format, in its order: (key, ja, en).
STATUS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("started", "発生時刻", "Started"),
    ("impact", "影響範囲", "Impact"),
    ("current", "現在の状況", "Current status"),
    ("eta", "対応予定時間", "Expected resolution"),
    ("next_update", "次回の更新予定", "Next update"),
)

_STRINGS: dict[str, tuple[str, str]] = {
    # common
    "to_fill": ("✍ 記入してください", "✍ to fill in"),
    "none": ("なし", "none"),
    "unknown": ("不明", "unknown"),
    "time": ("時刻", "time"),
    "item": ("項目", "item"),
    "value": ("値", "value"),
    "verdict": ("判定", "verdict"),
    "summary": ("概要", "summary"),
    "status": ("状態", "status"),
    "source": ("出所", "source"),
    "event": ("イベント", "event"),
    "detail": ("詳細", "detail"),
    "link": ("リンク", "link"),
    "minutes": ("分", "min"),
    # completion report
    "report.title": ("リリース完了報告", "Release completion report"),
    "report.completed": ("デプロイ完了時刻", "Deploy completed"),
    "report.started": ("デプロイ開始時刻", "Deploy started"),
    "report.duration": ("デプロイ所要時間", "Deploy duration"),
    "report.run": ("実行 ID", "Run"),
    "report.run_status": ("リリース全体の結果", "Release outcome"),
    "report.version": ("バージョン", "Version"),
    "report.previous": ("前回のバージョン", "Previous version"),
    "report.commit": ("リリースコミット", "Release commit"),
    "report.operator": ("実施者", "Operator"),
    "report.snapshot": ("デプロイ前スナップショット", "Pre-deploy snapshot"),
    "report.workflow": ("デプロイワークフロー", "Deploy workflow"),
    "report.recommendation": ("検証の推奨", "Verification recommendation"),
    "report.not_deployed": ("デプロイされていません", "not deployed"),
    "report.phase": ("フェーズ", "phase"),
    "report.checks": ("チェック", "checks"),
    "report.features": ("導入された新機能", "New features"),
    "report.fixes": ("修正されたバグ", "Fixed bugs"),
    "report.other": ("その他の変更", "Other changes"),
    "report.change": ("変更内容", "change"),
    "report.pr": ("プルリクエスト", "pull request"),
    "report.known_issues": ("既知の問題点", "Known issues"),
    "report.next_release": ("次回リリース予定", "Next release"),
    "report.not_set": ("未定（パラメータ next_release または環境ファイルで設定）",
                       "not set (parameter next_release or the environment file)"),
    "report.rollback": ("ロールバック", "Rollback"),
    "report.no_rollback": ("ロールバックは行われていません", "No rollback was needed"),
    "report.feedback": ("フィードバック（未対応）", "Feedback (open)"),
    "report.no_feedback": ("未対応のフィードバックはありません", "No open feedback"),
    "report.kind": ("種別", "kind"),
    "report.dry_run": ("ドライラン: デプロイは行われていません", "dry run: nothing was deployed"),
    "feedback.problem": ("問題点", "problem"),
    "feedback.improvement": ("改善点", "improvement"),
    # incident
    "incident.title": ("障害対応", "Incident"),
    "incident.role": ("役割", "role"),
    "incident.name": ("氏名", "name"),
    "incident.phone": ("電話", "phone"),
    "incident.email": ("メール", "email"),
    "incident.no_contacts": ("連絡先が環境ファイルにありません（contacts を設定してください）",
                             "no contacts in the environment file (add [[contacts]])"),
    "incident.not_set": ("未設定", "not set"),
    "incident.requests": ("リクエスト数", "requests"),
    "incident.errors": ("5xx 件数", "5xx responses"),
    "incident.error_rate": ("5xx 率 (%)", "5xx rate (%)"),
    "incident.p50": ("p50 (ms)", "p50 (ms)"),
    "incident.p95": ("p95 (ms)", "p95 (ms)"),
    "incident.p99": ("p99 (ms)", "p99 (ms)"),
    "incident.chart_title": ("障害の影響: エラー率と応答時間", "Impact: error rate and latency"),
    "report.chart_title": ("リリース前後のエラー率と応答時間", "Error rate and latency around the release"),
    "incident.chart_live": ("現在のメトリクス", "Live metrics"),
    "incident.start_mark": ("発生", "start"),
    "incident.endpoint": ("エンドポイント", "endpoint"),
    "incident.count": ("件数", "count"),
    "incident.notice_subject": ("【障害のお知らせ】", "[Service notice]"),
    "incident.decision": ("判断基準", "criterion"),
    "incident.observed": ("観測値", "observed"),
    "incident.threshold": ("基準", "threshold"),
    "incident.met": ("該当", "met"),
    "incident.crit.bug": ("致命的なバグ（5xx の急増）", "critical bug (5xx surge)"),
    "incident.crit.perf": ("パフォーマンスの著しい低下（p99）", "severe performance degradation (p99)"),
    "incident.crit.security": ("セキュリティ上の重大な問題", "serious security problem"),
    "incident.crit.security_obs": ("人が判断します", "a person decides"),
    "incident.yes": ("はい", "yes"),
    "incident.no": ("いいえ", "no"),
    "incident.manual": ("要判断", "to decide"),
    "incident.recommend_rollback": ("ロールバックを推奨します", "Rollback recommended"),
    "incident.recommend_watch": ("ロールバック基準には該当しません。監視を継続します",
                                 "No rollback criterion is met: keep watching"),
    "incident.rollback_cmd": ("ロールバックコマンド", "Rollback command"),
    "incident.prevention": ("再発防止策", "Prevention items"),
    "incident.deploys": ("直近のデプロイ", "Recent deploys"),
    "incident.opened": ("起票時刻", "Opened"),
    "incident.opened_short": ("起票", "opened"),
    "incident.start_basis": ("発生時刻の根拠", "Start from"),
    "incident.basis.given": ("指定された時刻（START）", "given (START)"),
    "incident.basis.errors": ("デプロイ後、5xx 率が平常時を外れた最初の区間",
                              "the first period after the deploy whose 5xx rate left the baseline"),
    "incident.basis.latency": ("デプロイ後、p99 が平常時を外れた最初の区間",
                               "the first period after the deploy whose p99 left the baseline"),
    "incident.basis.alarm": ("デプロイ後の最初のアラーム", "the first alarm after the deploy"),
    "incident.basis.opened": ("起票時刻（平常時を外れた区間もアラームも見つかりません）",
                              "the opening (no period off the baseline and no alarm found)"),
    "incident.suspected_deploy": ("疑わしいデプロイ", "Suspected deploy"),
    "incident.impact_period": ("影響期間", "impact period"),
    "incident.worst": ("最悪の{pool}", "worst {pool}"),
    "incident.no_worst": ("{min} 件以上の{pool}がないため最悪値なし",
                          "no {pool} with ≥ {min} requests: no worst figure"),
    "incident.live": ("直近 {minutes} 分の 5xx 率 {rate}、p99 {p99}",
                      "last {minutes} minutes: 5xx rate {rate}, p99 {p99}"),
    "incident.serving": ("現在 {served} を提供中", "serving {served}"),
    "incident.monitoring": ("監視を継続しています", "we keep monitoring"),
    "incident.state.suspected": ("疑わしいバージョン", "suspected version"),
    "incident.state.served": ("現在提供中のバージョン", "version served now"),
    "incident.state.rollback": ("ロールバック", "rollback"),
    "incident.state.checks": ("収束確認（今）", "convergence checks (now)"),
    "incident.state.live": ("直近のメトリクス", "live metrics"),
    "incident.state.verdict": ("判定", "verdict"),
    "incident.state.none": ("記録なし", "none recorded"),
    "incident.state.all_pass": ("すべて合格", "all pass"),
    "incident.state.failing": ("不合格: {ids}", "failing: {ids}"),
    "incident.state.converged": ("{version} はロールバック済み（{detail}）で、収束しています",
                                 "{version} was rolled back ({detail}) and has converged"),
    "incident.state.not_converged": ("{version} はロールバック済み（{detail}）ですが、まだ収束していません: {failing}",
                                     "{version} was rolled back ({detail}) but has not converged: {failing}"),
    "incident.state.rolling_back": ("{version} のロールバックを実行中です（{detail}）",
                                    "the rollback of {version} is running ({detail})"),
    "incident.state.not_rolled_back": ("{version} はロールバックされていません", "{version} has not been rolled back"),
    "incident.state.no_rollback": ("ロールバックは行われていません", "no rollback has been made"),
    "incident.state.replaced": ("ロールバックの記録はありませんが、現在 {served} を提供中",
                                "no rollback recorded, but {served} is served"),
    "incident.advice.monitor": ("ロールバックは不要です（実施済み・収束済み）。"
                                "監視を継続し、状況報告とポストモーテムを行ってください",
                                "No rollback needed (done and converged): keep monitoring, send a status report, "
                                "write the postmortem"),
    "incident.advice.fix": ("ロールバックは実施済みです（再実行は不要）。まだ失敗している項目を調べてください",
                            "The rollback is done (do not run it again): look into what still fails"),
    "incident.advice.wait": ("ロールバックの完了を待ち、収束確認を再実行してください",
                             "Wait for the rollback to finish, then re-run the convergence checks"),
    "incident.step.monitor": ("監視: 下の「継続的なモニタリング」", "monitor: the live metrics below"),
    "incident.step.status": ("状況報告", "status report"),
    "incident.step.postmortem": ("ポストモーテム", "postmortem"),
    "incident.step.failing": ("未解決", "still failing"),
    "incident.step.rerun": ("再確認", "re-run"),
    "incident.step.failed_rollback": ("前回のロールバック（run {run}）は {status} です: "
                                      "そのノートブックを確認してください",
                                      "the earlier rollback (run {run}) is {status}: see its notebook"),
    "incident.notice_rate": ("リクエストの約 {rate} がエラーとなっています（最も多い{pool}で {peak}）。",
                             "About {rate} of requests failed ({peak} in the worst {pool})."),
    "incident.notice_working": ("現在、原因の調査と復旧対応を進めております。",
                                "We are investigating and working on a fix."),
    "incident.notice_recovered": ("現在は復旧しており、引き続き監視しております。",
                                  "The service has recovered; we keep monitoring it."),
    # postmortem
    "pm.title": ("ポストモーテム", "Postmortem"),
    "pm.summary": ("概要", "Summary"),
    "pm.impact": ("影響", "Impact"),
    "pm.root_causes": ("根本原因", "Root causes"),
    "pm.trigger": ("トリガー", "Trigger"),
    "pm.resolution": ("解決策", "Resolution"),
    "pm.detection": ("検知", "Detection"),
    "pm.action_items": ("アクションアイテム", "Action items"),
    "pm.lessons": ("教訓", "Lessons learned"),
    "pm.went_well": ("うまくいったこと", "What went well"),
    "pm.went_wrong": ("うまくいかなかったこと", "What went wrong"),
    "pm.got_lucky": ("運が良かったこと", "Where we got lucky"),
    "pm.timeline": ("タイムライン", "Timeline"),
    "pm.owner": ("担当", "owner"),
    "pm.due": ("期限", "due"),
    "pm.action": ("アクション", "action"),
    "pm.kind": ("種類", "type"),
    "pm.chart_title": ("障害期間の影響", "Impact over the incident window"),
    "pm.deploy_start": ("デプロイ開始", "deploy start"),
    "pm.alarm": ("アラーム", "alarm"),
    "pm.rollback": ("ロールバック", "rollback"),
    "pm.recovery": ("回復", "recovery"),
    "pm.time_to_detect": ("検知までの時間", "time to detect"),
    "pm.time_to_mitigate": ("緩和までの時間", "time to mitigate"),
    "pm.duration": ("影響時間", "duration of impact"),
    "pm.computed": ("（自動算出）", "(computed)"),
    "pm.human": ("（要記入）", "(to fill)"),
}


def check_lang(lang: str) -> str:
    """`lang` if it is supported; InputError otherwise (a typo must not silently pick English)."""
    if lang not in LANGS:
        raise InputError("lang", f"must be one of {', '.join(LANGS)}, got {lang!r}")
    return lang


def resolve_lang(lang: str, default: str = "ja") -> str:
    """The explicit `lang` or else the environment's default."""
    return check_lang(lang or default)


def t(key: str, lang: str) -> str:
    """The string `key` in `lang`."""
    ja, en = _STRINGS[key]
    return ja if check_lang(lang) == "ja" else en


def status_labels(lang: str) -> list[tuple[str, str]]:
    """(key, label) of the five status-report fields in the seed's order."""
    check_lang(lang)
    return [(key, ja if lang == "ja" else en) for key, ja, en in STATUS_FIELDS]
