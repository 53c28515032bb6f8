"""Pre-release checks: one result shape, the checklist they answer to, and the summary board.

Why one shape: the runner, the gate and the HTML report all read the same five fields, so a
check is a function returning a `CheckResult` and nothing else. A check that cannot look (an
API error, a missing file) returns `fail` with the reason instead of raising, so every check
of the phase runs before the one gate decides (design convention 6).

Checks read the release commit, never the working copy: `Release` resolves the commit (the
version tag when it exists, else HEAD of the app repository) and reads files at it.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shipbook import gitinfo
from shipbook.config import Environment
from shipbook.errors import InputError, ShipbookError

log = logging.getLogger(__name__)

VERDICTS = ("pass", "warn", "fail", "skip", "manual")
_ORDER = ("pass", "skip", "manual", "warn", "fail")
NOT_AUTOMATED = "not automated yet in this version"


@dataclass
class CheckResult:
    """What one check found. `details` is the table shown under it; `evidence` says what it read."""

    id: str
    verdict: str
    summary: str
    details: list[dict] = field(default_factory=list)
    evidence: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"check {self.id}: verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def _repr_html_(self) -> str:
        return CheckView(self)._repr_html_()


def worst(verdicts: Iterable[str], default: str = "pass") -> str:
    """The most severe verdict: fail > warn > manual > skip > pass."""
    return max(verdicts, key=_ORDER.index, default=default)


def check(check_id: str) -> Callable[[Callable[..., CheckResult]], Callable[..., CheckResult]]:
    """Decorate a check so a ShipbookError (AWS, git, input) becomes a `fail` naming the reason.

    Why: the phase must run all its checks and gate once; an exception would stop the notebook
    at the first broken check and hide the others.
    """

    def deco(fn: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> CheckResult:
            try:
                return fn(*args, **kwargs)
            except ShipbookError as exc:
                log.warning("check %s could not run: %s", check_id, exc)
                return CheckResult(check_id, "fail", f"could not be checked: {exc}",
                                   evidence=f"{type(exc).__name__} while checking")

        return wrapper

    return deco


# --------------------------------------------------------------------------- the checklist


@dataclass(frozen=True)
class ChecklistRow:
    id: str
    ja: str
    en: str
    phase: str = "precheck"


# Section 1 of the release checklist (CHECKLIST.md), in its order. Every row appears in the
# precheck summary, automated or not: an item nobody checks is a `skip` with a reason.
SECTION_1: tuple[ChecklistRow, ...] = (
    ChecklistRow("code.tests", "すべての自動テストがパスしている", "all automated tests pass"),
    ChecklistRow("code.review", "コードレビューが完了している", "code review done"),
    ChecklistRow("code.bandit", "セキュリティスキャン（bandit）に問題がない", "bandit finds nothing"),
    ChecklistRow("code.ruff", "コーディング規約チェック（ruff）に問題がない", "ruff finds nothing"),
    ChecklistRow("code.release_notes", "リリースノートが作成済みである", "release notes written"),
    ChecklistRow("code.shared", "変更内容とテスト結果をチームで共有している",
                 "changes and test results shared with the team"),
    ChecklistRow("db.migrations", "新規マイグレーションファイルの確認", "new migration files reviewed"),
    ChecklistRow("db.migration_graph", "・依存関係に問題がないか", "dependencies sound"),
    ChecklistRow("db.migration_estimate", "・大規模なデータ移行の実行時間の見積もり",
                 "runtime estimate for large data migrations"),
    ChecklistRow("db.rollback_plan", "マイグレーションのロールバック計画", "rollback plan for each migration"),
    ChecklistRow("db.backup", "データベースバックアップの実施", "database backup taken", phase="backup"),
    ChecklistRow("env.variables", "本番環境の環境変数設定 (SECRET_KEY, DATABASE_URL, ALLOWED_HOSTS, …)",
                 "production environment variables"),
    ChecklistRow("iam.task_execution_role", "IAM権限 (ECSタスク実行ロール)",
                 "IAM permissions: ECS task execution role"),
    ChecklistRow("iam.ecr_push", "IAM権限 (ECRプッシュ権限)", "IAM permissions: ECR push"),
    ChecklistRow("network.security_groups", "セキュリティグループ (必要なポートだけ)",
                 "security groups: only needed ports"),
    ChecklistRow("infra.cloudformation", "CloudFormationテンプレートの変更確認", "CloudFormation template changes"),
    ChecklistRow("infra.ecs", "ECSサービス/タスク定義の変更確認", "ECS service / task definition changes"),
    ChecklistRow("infra.alb", "ALB設定（ヘルスチェックパス等）", "ALB settings (health check path …)"),
    ChecklistRow("infra.scaling", "スケーリング設定の確認", "scaling settings"),
)
ROWS: dict[str, ChecklistRow] = {r.id: r for r in SECTION_1}

# The checks this version of the precheck notebook runs.
PRECHECK_AUTOMATED: tuple[str, ...] = (
    "env.variables", "iam.task_execution_role", "iam.ecr_push", "network.security_groups",
    "infra.cloudformation", "infra.ecs", "infra.alb", "infra.scaling",
)


def not_automated(check_id: str) -> CheckResult:
    """The honest result for a checklist row nothing checks yet: a skip that says so."""
    return CheckResult(check_id, "skip", NOT_AUTOMATED)


# --------------------------------------------------------------------------- the release commit


@dataclass(frozen=True)
class Release:
    """The commit being released and a way to read its files (never the working copy)."""

    repo: str
    version: str
    commit: str
    ref: str

    def read(self, path: str) -> str:
        return gitinfo.git(self.repo, "show", f"{self.commit}:{path}")

    def read_json(self, path: str) -> dict:
        text = self.read(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON at {self.short}: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(path, f"expected a JSON object at {self.short}")
        return data

    @property
    def short(self) -> str:
        return self.commit[:12]

    def where(self, path: str) -> str:
        """How a result names what it read: `infra/taskdef.json @ 1a2b3c (tag v1.0.0)`."""
        return f"{path} @ {self.short} ({self.ref})"


def release(env: Environment, version: str, commit: str = "") -> Release:
    """The release commit: the run's `commit` when given, else the `version` tag when it exists (a re-run),
    else HEAD of the app repo.

    Why the run's commit first: the runner records one commit when the run starts and hands it to every
    phase, so precheck checks the commit deploy will tag even if HEAD has moved since. It must still be in
    the repository, and a `version` tag that already exists must point at it.
    """
    repo = env.app.repo
    if not gitinfo.is_repo(repo):
        raise InputError("app.repo", f"{repo} is not a git repository")
    tagged = gitinfo.rev_or_empty(repo, f"refs/tags/{version}") if version else ""
    if commit:
        pinned = gitinfo.rev_or_empty(repo, commit)
        if not pinned:
            raise InputError("release_commit", f"the run's release commit {commit[:12]} is not in {repo} "
                             "(history rewritten?): start a new run")
        if tagged and tagged != pinned:
            raise InputError("release_commit", f"tag {version} points at {tagged[:12]}, not at the run's release "
                             f"commit {pinned[:12]}")
        head = gitinfo.rev_or_empty(repo, "HEAD")
        moved = "" if head == pinned else f"; HEAD has moved to {head[:12]}"
        return Release(repo, version, pinned, (f"tag {version}" if tagged else "the run's release commit") + moved)
    if tagged:
        return Release(repo, version, tagged, f"tag {version}")
    head = gitinfo.rev(repo, "HEAD")
    why = f"tag {version} not created yet" if version else "no version given"
    return Release(repo, version, head, f"HEAD, {why}")


# --------------------------------------------------------------------------- sign-offs


def parse_signoffs(text: str) -> dict[str, str]:
    """`"code.review=alice, code.shared=bob"` → {id: who}. A malformed entry is an input error."""
    out: dict[str, str] = {}
    for part in re.split(r"[,\n;]", text or ""):
        part = part.strip()
        if not part:
            continue
        check_id, sep, who = part.partition("=")
        check_id, who = check_id.strip(), who.strip()
        if not sep or not check_id or not who:
            raise InputError("signoffs", f"{part!r}: expected check.id=name")
        out[check_id] = who
    return out


def apply_signoffs(results: Iterable[CheckResult], signoffs: Mapping[str, str]) -> list[CheckResult]:
    """A `manual` check with a sign-off passes (who signed is kept); without one it blocks.

    Why turn it into `fail`: the gate blocks on `fail` only, and a manual item nobody signed
    must stop the release like a failed check, with the reason in the summary.
    """
    out = []
    for r in results:
        if r.verdict != "manual":
            out.append(r)
        elif r.id in signoffs:
            out.append(replace(r, verdict="pass", summary=f"signed off by {signoffs[r.id]}: {r.summary}",
                               details=[*r.details, {"signed_off_by": signoffs[r.id]}]))
        else:
            out.append(replace(r, verdict="fail",
                               summary=f"needs a sign-off (signoffs=\"{r.id}=NAME\"): {r.summary}"))
    return out


# --------------------------------------------------------------------------- display

# verdict → (colour, label); built from rows (a dict literal keyed "pass" looks like a password to bandit)
_BADGES: dict[str, tuple[str, str]] = {v: (c, t) for v, c, t in (
    ("pass", "#1a7f37", "✔ pass"), ("warn", "#9a6700", "⚠ warn"), ("fail", "#cf222e", "✘ fail"),
    ("skip", "#6e7781", "– skip"), ("manual", "#8250df", "✋ manual"), ("pending", "#0969da", "… pending"))}


def badge(verdict: str) -> str:
    """An inline-styled HTML badge (the notebook HTML has no stylesheet of ours)."""
    colour, label = _BADGES.get(verdict, ("#6e7781", verdict))
    return (f'<span style="display:inline-block;white-space:nowrap;padding:.1em .6em;border-radius:1em;'
            f'color:#fff;background:{colour};font-size:.85em">{html.escape(label)}</span>')


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False, default=str)
    elif value is None:
        value = ""
    return html.escape(str(value))


def html_table(rows: list[dict], columns: list[str] | None = None, raw: Iterable[str] = ()) -> str:
    """A plain HTML table of dict rows (columns in first-seen order); `raw` columns are not escaped."""
    if not rows:
        return "<p><em>(no rows)</em></p>"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    raw = set(raw)
    head = "".join(f"<th style=\"text-align:left\">{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f"<td style=\"text-align:left\">{r.get(c, '') if c in raw else _cell(r.get(c))}</td>" for c in cols)
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """The same table as text, for consoles and the text/plain output."""
    if not rows:
        return "(no rows)"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = [[html.unescape(_cell(r.get(c))) for c in cols] for r in rows]
    widths = [min(60, max(len(c), *(len(row[i]) for row in cells))) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v[:60].ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


class CheckView:
    """One check as shown under its heading: badge and summary, the details table, the evidence."""

    def __init__(self, res: CheckResult) -> None:
        self.res = res

    def _repr_html_(self) -> str:
        r = self.res
        ev = f'<p style="color:#57606a;font-size:.85em">evidence: {html.escape(r.evidence)}</p>' if r.evidence else ""
        return f"<p>{badge(r.verdict)} <code>{html.escape(r.id)}</code> — {html.escape(r.summary)}</p>" \
               f"{html_table(r.details) if r.details else ''}{ev}"

    def __repr__(self) -> str:
        r = self.res
        parts = [f"[{r.verdict.upper()}] {r.id}: {r.summary}"]
        if r.details:
            parts.append(text_table(r.details))
        if r.evidence:
            parts.append(f"evidence: {r.evidence}")
        return "\n".join(parts)


def show(res: CheckResult) -> CheckView:
    return CheckView(res)


class Summary:
    """The summary table: check id, the checklist line in Japanese and English, verdict, summary."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def _repr_html_(self) -> str:
        rows = [{"check": f"<code>{html.escape(r['id'])}</code>", "チェック項目": html.escape(r["ja"]),
                 "checklist line": html.escape(r["en"]), "verdict": badge(r["verdict"]),
                 "summary": html.escape(r["summary"])} for r in self.rows]
        return html_table(rows, raw=("check", "チェック項目", "checklist line", "verdict", "summary"))

    def __repr__(self) -> str:
        return text_table([{"check": r["id"], "verdict": r["verdict"], "summary": r["summary"], "en": r["en"]}
                           for r in self.rows])


class Board:
    """The precheck summary: one row per line of checklist section 1, filled in as checks run.

    Why a display id: the summary opens the notebook but the checks run in the cells below it;
    `show()` displays the table once and every `add()` updates that same output, so the saved
    notebook and its HTML open with the complete table.
    """

    DISPLAY_ID = "shipbook-precheck-summary"

    def __init__(self, phase: str = "precheck", automated: Iterable[str] = PRECHECK_AUTOMATED,
                 rows: Iterable[ChecklistRow] = SECTION_1) -> None:
        self.phase = phase
        self.rows = list(rows)
        self.automated = set(automated)
        self.results: dict[str, CheckResult] = {}
        self.signoffs: dict[str, str] = {}
        self._shown = False
        for row in self.rows:
            if row.id in self.automated:
                continue
            if row.phase != phase:
                self.results[row.id] = CheckResult(row.id, "skip", f"done in phase {row.phase}, after this gate")
            else:
                self.results[row.id] = not_automated(row.id)

    def summary(self) -> Summary:
        out = []
        for row in self.rows:
            res = self.results.get(row.id)
            out.append({"id": row.id, "ja": row.ja, "en": row.en, "verdict": res.verdict if res else "pending",
                        "summary": res.summary if res else "not run yet"})
        return Summary(out)

    def show(self) -> None:
        """Display the summary where the call is; later `add()` calls update it in place."""
        from IPython.display import display  # only inside a kernel

        display(self.summary(), display_id=self.DISPLAY_ID)
        self._shown = True

    def add(self, res: CheckResult) -> CheckView:
        """Record a result, refresh the summary, and return the result's view for its own cell."""
        if res.id not in ROWS and res.id not in self.automated:
            log.warning("check %s is not a row of the checklist", res.id)
        self.results[res.id] = res
        if self._shown:
            from IPython.display import update_display

            update_display(self.summary(), display_id=self.DISPLAY_ID)
        return CheckView(res)

    def not_automated(self) -> Summary:
        """The rows this notebook does not check: not automated yet, or owned by a later phase."""
        return Summary([r for r in self.summary().rows if r["id"] not in self.automated])

    def finish(self, signoffs: str | Mapping[str, str] = "") -> list[CheckResult]:
        """Every row's result for the gate: sign-offs applied, an automated check that never ran fails."""
        given = parse_signoffs(signoffs) if isinstance(signoffs, str) else dict(signoffs)
        self.signoffs = given
        for row in self.rows:
            if row.id not in self.results:
                self.results[row.id] = CheckResult(row.id, "fail", "the check did not run in this notebook")
        ordered = [self.results[r.id] for r in self.rows]
        extra = [r for k, r in self.results.items() if k not in ROWS]
        final = apply_signoffs(ordered + extra, given)
        for r in final:
            self.results[r.id] = r
        unused = sorted(set(given) - {r.id for r in ordered + extra if r.verdict == "manual"})
        if unused:
            log.info("sign-offs for checks that needed none: %s", ", ".join(unused))
        if self._shown:
            from IPython.display import update_display

            update_display(self.summary(), display_id=self.DISPLAY_ID)
        return final

    def facts(self) -> dict[str, Any]:
        """What the run records besides the checks: who signed off what."""
        return {f"{self.phase}_signoffs": dict(self.signoffs)}
