"""Build the demo app's git history: a bare `origin`, a working clone and GitHub metadata.

The history is deterministic (fixed people, dates and contents): a scaffold commit, feature
pull requests merged with "Merge pull request #N from ..." commits and approving reviews, the
annotated tag `v0.9.0`, then the v1.0.0 work (two new migrations, a task definition change) and
a release commit with the v1.0.0 notes. `main` is left at that commit, untagged: the release
tool creates `v1.0.0`. A scenario adds its change as one more pull request (or, for an
unreviewed change, a direct commit) before the release commit.

Pull requests, reviews and CI check runs are written to `<bare>/github.json`, which the GitHub
twin serves. The bare repository's post-receive hook hands pushed tags to the GitHub twin's
deployer at the URL in `git config shipbook.githubUrl` (set with `github_url=` or
`set_github_url`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipbook.sandbox import scenarios

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent / "demo_app"
FIXTURE_TEMPLATE = Path(__file__).resolve().parent / "fixture" / "template.yaml"
GITHUB_JSON = "github.json"
REPO_FULL_NAME = "example/demo-app"
PREVIOUS_TAG = "v0.9.0"
RELEASE_VERSION = "v1.0.0"

PEOPLE: dict[str, tuple[str, str]] = {
    "alice": ("Alice Abe", "alice@example.com"),
    "bob": ("Bob Baker", "bob@example.com"),
    "carol": ("Carol Chen", "carol@example.com"),
    "dave": ("Dave Doi", "dave@example.com"),
    "erin": ("Erin Endo", "erin@example.com"),
    "mallory": ("Mallory Mori", "mallory@example.com"),
}

_EPOCH = datetime(2025, 9, 1, 1, 0, tzinfo=UTC)
_HOOK_NAME = "post-receive"

# A file's source: "" = the app tree as of v1.0.0, "v0.9.0" = _history/v0.9.0, "=text" = literal text.
FileSources = dict[str, str]


@dataclass(frozen=True)
class Commit:
    message: str
    files: FileSources
    author: str | None = None


@dataclass(frozen=True)
class Change:
    """A pull request (one or more commits, merged with a merge commit) or a direct commit."""

    title: str
    author: str
    branch: str
    commits: tuple[Commit, ...]
    reviewers: tuple[tuple[str, str], ...] = ()
    kind: str = "Features"
    body: str = ""
    pull_request: bool = True
    edits: tuple[scenarios.FileEdit, ...] = ()
    in_notes: bool = True


def _c(message: str, *paths: str, source: str = "") -> Commit:
    return Commit(message, dict.fromkeys(paths, source))


SCAFFOLD = Commit(
    "chore: scaffold the Django project",
    {
        **dict.fromkeys(
            [
                "manage.py",
                "demo/__init__.py",
                "demo/settings.py",
                "demo/dburl.py",
                "demo/logs.py",
                "demo/middleware.py",
                "demo/wsgi.py",
                "requirements.txt",
                ".gitignore",
                "README.md",
                "pyproject.toml",
            ],
            "",
        ),
        "VERSION": "=0.1.0\n",
    },
    author="alice",
)

BEFORE_PREVIOUS: tuple[Change, ...] = (
    Change(
        "feat(shop): product catalogue API",
        "bob",
        "feat/catalogue",
        (
            _c("feat(shop): product model and initial migration", "shop/__init__.py", "shop/apps.py",
               "shop/migrations/__init__.py", "shop/migrations/0001_initial.py"),
            Commit(
                "feat(shop): product list and detail views",
                {"shop/models.py": "v0.9.0", "shop/views.py": "v0.9.0", "shop/urls.py": "v0.9.0",
                 "shop/tests.py": "v0.9.0", "demo/urls.py": ""},
            ),
        ),
        reviewers=(("alice", "APPROVED"),),
    ),
    Change(
        "feat: health and version endpoints for the load balancer",
        "carol",
        "feat/health-version",
        (Commit("feat: /health/ and /version/", {"demo/views.py": "v0.9.0", "demo/tests.py": ""}),),
        reviewers=(("bob", "APPROVED"),),
    ),
    Change(
        "feat(shop): seed the launch catalogue",
        "bob",
        "feat/seed-catalogue",
        (_c("feat(shop): data migration with the launch products", "shop/migrations/0002_seed_products.py"),),
        reviewers=(("carol", "APPROVED"),),
    ),
    Change(
        "ci: deploy to ECS on tag push",
        "carol",
        "ci/deploy",
        (
            Commit("ci: image build and ECS deploy workflow",
                   {".github/workflows/deploy.yml": "", ".github/workflows/ci.yml": "", "Dockerfile": ""}),
            Commit("chore(infra): CloudFormation stack and task definition",
                   {"infra/template.yaml": "", "infra/taskdef.json": "v0.9.0"}),
        ),
        reviewers=(("alice", "COMMENTED"), ("alice", "APPROVED")),
        kind="Chores",
    ),
)

TOWARDS_RELEASE: tuple[Change, ...] = (
    Change(
        "feat(shop): product categories",
        "bob",
        "feat/categories",
        (
            _c("feat(shop): category model, filter and category list", "shop/models.py",
               "shop/migrations/0003_category.py", "shop/views.py", "shop/urls.py"),
            _c("feat(shop): file the existing products under categories",
               "shop/migrations/0004_assign_categories.py", "shop/tests.py"),
        ),
        reviewers=(("carol", "CHANGES_REQUESTED"), ("carol", "APPROVED")),
        body="Adds `Category`, `/categories/` and `/products/?category=`. Two migrations: the schema "
        "change (0003) and a reversible data migration (0004).",
    ),
    Change(
        "fix: health check answers 503 when the database is unreachable",
        "carol",
        "fix/health-503",
        (_c("fix: health check answers 503 when the database is unreachable", "demo/views.py"),),
        reviewers=(("alice", "APPROVED"),),
        kind="Fixes",
    ),
    Change(
        "chore(infra): more memory for the web task and an explicit log level",
        "alice",
        "chore/taskdef-memory",
        (_c("chore(infra): memory 1024 MiB and LOG_LEVEL for the web task", "infra/taskdef.json"),),
        reviewers=(("bob", "APPROVED"),),
        kind="Chores",
    ),
)


@dataclass
class _Builder:
    work: Path
    scenario: str
    clock: datetime = _EPOCH
    pulls: list[dict[str, object]] = field(default_factory=list)
    direct_commits: list[str] = field(default_factory=list)
    check_runs: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    notes: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)

    # -- git plumbing -------------------------------------------------------------------
    def git(self, *args: str, who: str = "alice", when: datetime | None = None) -> str:
        name, email = PEOPLE[who]
        stamp = (when or self.clock).strftime("%Y-%m-%dT%H:%M:%S+0000")
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_COMMITTER_DATE": stamp,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.work),
        }
        result = subprocess.run(
            ["git", "-C", str(self.work), *args], env=env, check=True, capture_output=True, text=True
        )
        return result.stdout.strip()

    def tick(self, hours: float) -> datetime:
        self.clock += timedelta(hours=hours)
        return self.clock

    # -- content --------------------------------------------------------------------------
    def write(self, path: str, source: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_content(path, source), encoding="utf-8")
        if path == "manage.py":
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def apply_edit(self, edit: scenarios.FileEdit) -> None:
        target = self.work / edit.path
        text = target.read_text(encoding="utf-8")
        if text.count(edit.find) != 1:
            raise ValueError(f"scenario edit of {edit.path}: expected one match of {edit.find!r}")
        target.write_text(text.replace(edit.find, edit.replace), encoding="utf-8")

    def commit(self, message: str, who: str, files: FileSources, edits: tuple = ()) -> str:
        for path, source in files.items():
            self.write(path, source)
        for edit in edits:
            self.apply_edit(edit)
        self.git("add", "-A", who=who)
        self.git("commit", "-q", "-m", message, who=who)
        sha = self.git("rev-parse", "HEAD")
        self.tick(2)
        return sha

    def record_check(self, sha: str, when: datetime) -> None:
        self.check_runs[sha] = [
            {
                "name": "test",
                "status": "completed",
                "conclusion": "success",
                "started_at": _iso(when + timedelta(minutes=1)),
                "completed_at": _iso(when + timedelta(minutes=3)),
                "app": "github-actions",
                "workflow": "ci",
            }
        ]

    # -- changes --------------------------------------------------------------------------
    def land(self, change: Change, version: str) -> str:
        """Merge `change` into main (through a pull request unless it is a direct commit)."""
        self.notes.setdefault(version, [])
        if not change.pull_request:
            sha = ""
            for commit in change.commits or (Commit(change.title, {}),):
                sha = self.commit(commit.message, commit.author or change.author, commit.files, change.edits)
                self.direct_commits.append(sha)
                self.record_check(sha, self.clock)
            if change.in_notes:
                self.notes[version].append((change.kind, [change.title]))
            return sha
        number = len(self.pulls) + 1
        base_sha = self.git("rev-parse", "main")
        opened = self.tick(1)
        self.git("checkout", "-q", "-b", change.branch, who=change.author)
        shas: list[str] = []
        commits = change.commits or (Commit(change.title, {}),)
        for index, commit in enumerate(commits):
            edits = change.edits if index == len(commits) - 1 else ()
            shas.append(self.commit(commit.message, commit.author or change.author, commit.files, edits))
        head = shas[-1]
        self.record_check(head, self.clock)
        reviews = []
        for reviewer, state in change.reviewers:
            reviewed_at = self.tick(1)
            reviews.append(
                {
                    "id": 80000 + number * 10 + len(reviews),
                    "user": reviewer,
                    "state": state,
                    "submitted_at": _iso(reviewed_at),
                    "commit_id": head,
                    "body": "LGTM" if state == "APPROVED" else "A few comments inline.",
                }
            )
        merged_at = self.tick(1)
        merger = next((r for r, s in change.reviewers if s == "APPROVED"), change.author)
        self.git("checkout", "-q", "main")
        self.git(
            "merge",
            "-q",
            "--no-ff",
            "-m",
            f"Merge pull request #{number} from {REPO_FULL_NAME.split('/')[0]}/{change.branch}\n\n{change.title}",
            change.branch,
            who=merger,
            when=merged_at,
        )
        merge_sha = self.git("rev-parse", "HEAD")
        self.git("update-ref", f"refs/pull/{number}/head", head)
        self.git("branch", "-q", "-D", change.branch)
        self.record_check(merge_sha, merged_at)
        self.tick(3)
        self.pulls.append(
            {
                "number": number,
                "title": change.title,
                "body": change.body,
                "user": change.author,
                "state": "closed",
                "merged": True,
                "created_at": _iso(opened),
                "merged_at": _iso(merged_at),
                "closed_at": _iso(merged_at),
                "merged_by": merger,
                "head": {"ref": change.branch, "sha": head},
                "base": {"ref": "main", "sha": base_sha},
                "merge_commit_sha": merge_sha,
                "commits": shas,
                "reviews": reviews,
            }
        )
        if change.in_notes:
            self.notes[version].append((change.kind, [f"{change.title} (#{number})"]))
        return merge_sha

    def release_notes(self, versions: list[str]) -> str:
        lines = ["# Release notes", ""]
        for version in reversed(versions):
            lines += [f"## {version}", ""]
            for kind in ("Features", "Fixes", "Chores"):
                items = [title for k, titles in self.notes.get(version, []) if k == kind for title in titles]
                if items:
                    lines += [f"### {kind}", "", *[f"- {item}" for item in items], ""]
            if version == RELEASE_VERSION:
                migrations = sorted(
                    p.name
                    for p in (self.work / "shop" / "migrations").glob("0*.py")
                    if p.name >= "0003"
                )
                lines += ["### Database migrations", "", *[f"- shop.{name[:-3]}" for name in migrations], ""]
        return "\n".join(lines)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(path: str, source: str) -> str:
    """A repository file's text from the app tree, its v0.9.0 history, or a literal."""
    if source.startswith("="):
        return source[1:]
    if path == "infra/template.yaml":
        return template_text()
    packaged = "/".join("dot-" + part[1:] if part.startswith(".") else part for part in path.split("/"))
    base = APP_DIR / "_history" / source if source else APP_DIR
    return (base / packaged).read_text(encoding="utf-8")


def template_text() -> str:
    """The stack's CloudFormation template: the twin's fixture, or a placeholder until it exists."""
    if FIXTURE_TEMPLATE.exists():
        return FIXTURE_TEMPLATE.read_text(encoding="utf-8")
    logger.warning("fixture template %s missing; the demo app gets a placeholder", FIXTURE_TEMPLATE)
    return (
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Description: shipbook demo stack (placeholder until the sandbox fixture exists)\n"
        "Parameters:\n  ImageTag:\n    Type: String\n    Default: v0.9.0\n"
        "Resources:\n  LogGroup:\n    Type: AWS::Logs::LogGroup\n"
        "    Properties:\n      LogGroupName: /ecs/demo-web\n      RetentionInDays: 30\n"
    )


def scenario_change(name: str) -> Change | None:
    """The scenario's app change as a pull request or direct commit, or None."""
    app = scenarios.get(name).app
    if app is None:
        return None
    commit = Commit(app.title, {path: "=" + text for path, text in app.new_files}, author=app.author)
    reviewer = "carol" if app.author != "carol" else "bob"
    return Change(
        app.title,
        app.author,
        app.branch,
        (commit,),
        reviewers=((reviewer, "APPROVED"),) if app.reviewed else (),
        kind=app.kind,
        body=app.body,
        pull_request=app.reviewed,
        edits=app.edits,
    )


HOOK_TEMPLATE = '''#!{python}
"""post-receive: hand pushed tags to the sandbox deployer (the GitHub Actions stand-in)."""
import json
import os
import subprocess
import sys
import urllib.request

url = os.environ.get("SHIPBOOK_GITHUB_URL") or subprocess.run(
    ["git", "config", "--get", "shipbook.githubUrl"], capture_output=True, text=True
).stdout.strip()
for line in sys.stdin:
    old, new, ref = line.split()
    if not ref.startswith("refs/tags/") or set(new) == {{"0"}}:
        continue
    if not url:
        print("shipbook: no deployer configured (git config shipbook.githubUrl); tag not deployed")
        continue
    body = json.dumps({{"ref": ref, "before": old, "after": new, "repository": os.path.abspath(".")}}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/_sandbox/push", data=body, headers={{"Content-Type": "application/json"}}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            answer = json.loads(response.read() or b"{{}}")
        print(f"shipbook: workflow run {{answer.get('id')}} queued for {{ref}}: {{answer.get('html_url', '')}}")
    except OSError as error:
        print(f"shipbook: could not reach the deployer at {{url}}: {{error}}")
'''


def install_hook(bare: Path, python: str | None = None) -> Path:
    """Write the post-receive hook into `bare` (using `python`, default this interpreter)."""
    hook = bare / "hooks" / _HOOK_NAME
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK_TEMPLATE.format(python=python or sys.executable), encoding="utf-8")
    hook.chmod(0o755)
    return hook


def set_github_url(bare: Path, github_url: str) -> None:
    """Tell the bare repository's hook where the GitHub twin listens."""
    subprocess.run(["git", "-C", str(bare), "config", "shipbook.githubUrl", github_url], check=True)


def build(
    dest_bare: Path,
    work: Path,
    scenario: str = "healthy",
    github_url: str | None = None,
) -> dict[str, object]:
    """Create the bare origin `dest_bare` and the working clone `work` (both replaced if present).

    Returns a summary: shas of the tags and of main, pull request numbers, the scenario and the
    path of the GitHub metadata file.
    """
    scenarios.get(scenario)  # unknown names fail before anything is written
    dest_bare, work = Path(dest_bare).resolve(), Path(work).resolve()
    for path in (dest_bare, work):
        if path.exists():
            shutil.rmtree(path)
    work.mkdir(parents=True)
    builder = _Builder(work=work, scenario=scenario)
    builder.git("init", "-q", "-b", "main")
    builder.git("config", "user.name", PEOPLE["alice"][0])
    builder.git("config", "user.email", PEOPLE["alice"][1])
    builder.git("config", "commit.gpgsign", "false")
    builder.git("config", "tag.gpgsign", "false")

    root = builder.commit(SCAFFOLD.message, "alice", SCAFFOLD.files)
    builder.direct_commits.append(root)
    builder.record_check(root, _EPOCH)
    for change in BEFORE_PREVIOUS:
        builder.land(change, PREVIOUS_TAG)
    previous = _release_commit(builder, PREVIOUS_TAG, [PREVIOUS_TAG])
    builder.git("tag", "-a", "--cleanup=whitespace", PREVIOUS_TAG, "-m", _tag_message(builder, PREVIOUS_TAG), previous,
                when=builder.tick(1))
    builder.tick(24 * 5)

    extra = scenario_change(scenario)
    for change in (*TOWARDS_RELEASE, *((extra,) if extra else ())):
        builder.land(change, RELEASE_VERSION)
    head = _release_commit(builder, RELEASE_VERSION, [PREVIOUS_TAG, RELEASE_VERSION])

    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(dest_bare)], check=True)
    builder.git("remote", "add", "origin", str(dest_bare))
    builder.git("push", "-q", "origin", "main", f"refs/tags/{PREVIOUS_TAG}", "refs/pull/*:refs/pull/*")
    builder.git("branch", "-q", "--set-upstream-to=origin/main", "main")
    install_hook(dest_bare)
    if github_url:
        set_github_url(dest_bare, github_url)

    metadata = {
        "repository": REPO_FULL_NAME,
        "default_branch": "main",
        "scenario": scenario,
        "people": {login: {"name": n, "email": e} for login, (n, e) in PEOPLE.items()},
        "pulls": builder.pulls,
        "direct_commits": builder.direct_commits,
        "check_runs": builder.check_runs,
        "deployments": [
            {"tag": PREVIOUS_TAG, "sha": previous, "conclusion": "success",
             "created_at": _iso(_tag_time(builder, PREVIOUS_TAG))}
        ],
    }
    github_json = dest_bare / GITHUB_JSON
    github_json.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    summary: dict[str, object] = {
        "bare": str(dest_bare),
        "work": str(work),
        "scenario": scenario,
        "previous_tag": PREVIOUS_TAG,
        "previous_sha": previous,
        "head": head,
        "release_version": RELEASE_VERSION,
        "pulls": [p["number"] for p in builder.pulls],
        "github_json": str(github_json),
    }
    logger.info("demo app history built: %s", summary)
    return summary


def _release_commit(builder: _Builder, version: str, versions: list[str]) -> str:
    """The release pull request: VERSION bumped, release notes with the version's section."""
    builder.notes.setdefault(version, [])
    notes = builder.release_notes(versions)
    change = Change(
        f"chore(release): {version}",
        "alice",
        f"release/{version}",
        (Commit(f"chore(release): {version}", {"VERSION": f"={version[1:]}\n", "RELEASE_NOTES.md": "=" + notes}),),
        reviewers=(("bob", "APPROVED"),),
        kind="Chores",
        in_notes=False,
    )
    return builder.land(change, version)


def _tag_message(builder: _Builder, version: str) -> str:
    notes = (builder.work / "RELEASE_NOTES.md").read_text(encoding="utf-8")
    section = notes.split(f"## {version}\n", 1)[1].split("\n## ", 1)[0]
    return f"Release {version}\n\n{section.strip()}\n"


def _tag_time(builder: _Builder, tag: str) -> datetime:
    stamp = builder.git("for-each-ref", "--format=%(taggerdate:iso-strict)", f"refs/tags/{tag}")
    return datetime.fromisoformat(stamp)


def main(argv: list[str] | None = None) -> int:
    """`python -m shipbook.sandbox.repo_builder BARE WORK [SCENARIO]` for manual use."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = build(Path(args[0]), Path(args[1]), args[2] if len(args) > 2 else "healthy")
    logger.info("%s", json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
