"""Mirror a finished run to S3 (`runner.runs_url = "s3://bucket/prefix"`)."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from shipbook import aws
from shipbook.config import Environment

log = logging.getLogger(__name__)


def s3_target(url: str) -> tuple[str, str]:
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def mirror_run(env: Environment, runs_root: Path, run_dir: Path) -> list[str]:
    """Upload every file of the run (and the environment's ledger and the index). Returns the keys."""
    bucket, prefix = s3_target(env.runner.runs_url)
    s3 = aws.client(env, "s3")
    files = [p for p in sorted(run_dir.rglob("*")) if p.is_file()]
    files += [p for p in (runs_root / env.name / "ledger.jsonl", runs_root / "index.html") if p.is_file()]
    keys = []
    for path in files:
        key = "/".join(x for x in (prefix, str(path.relative_to(runs_root))) if x)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as fh:
            aws.call(s3, "put_object", Bucket=bucket, Key=key, Body=fh, ContentType=ctype)
        keys.append(key)
    log.info("mirrored %d files to s3://%s/%s", len(keys), bucket, prefix)
    return keys
