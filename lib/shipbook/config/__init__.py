"""Environment files: `environments/<env>.toml` loaded once into a frozen, validated object.

Why so strict: a typo in a release config must stop the release before anything changes,
so unknown keys and wrong types are rejected with `file: key: reason`. Secrets appear only
as references (`{secretsmanager = "arn"}`, `{ssm = "/name"}`, `{env = "VAR"}`), never values.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from pathlib import Path

from shipbook import places
from shipbook.config.sections import (
    SANDBOX_ACCOUNT,
    SANDBOX_CREDENTIAL,
    AppSection,
    AwsSection,
    BackupSection,
    Contact,
    DeploySection,
    Environment,
    GithubSection,
    HealthCheckSection,
    IncidentSection,
    LockSection,
    PrecheckSection,
    ReportSection,
    RollbackSection,
    RunnerSection,
    SecretRef,
    SmokeTestSection,
    StackSection,
    VerifySection,
)
from shipbook.config.validate import INGRESS_ROLES, parse_ingress, validate
from shipbook.errors import ConfigError
from shipbook.places import PROJECT_ROOT

__all__ = [
    "AppSection",
    "AwsSection",
    "BackupSection",
    "Contact",
    "DeploySection",
    "Environment",
    "GithubSection",
    "HealthCheckSection",
    "INGRESS_ROLES",
    "IncidentSection",
    "LockSection",
    "PROJECT_ROOT",
    "PrecheckSection",
    "ReportSection",
    "RollbackSection",
    "RunnerSection",
    "SANDBOX_ACCOUNT",
    "SANDBOX_CREDENTIAL",
    "SecretRef",
    "SmokeTestSection",
    "StackSection",
    "VerifySection",
    "env_path",
    "load",
    "load_file",
    "parse_ingress",
    "sandbox_state",
    "validate",
]

_PLACEHOLDER = re.compile(r"\{sandbox\.([a-z_]+)\}")
_SECRET_WORDS = re.compile(r"(secret|password|passwd|token|api_key|apikey|private_key)", re.I)

# --------------------------------------------------------------------------- loading


def env_path(name: str, env_dir: Path | None = None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", name or ""):
        raise ConfigError("--env", "name", f"{name!r} is not a valid environment name")
    return (env_dir or places.env_dir()) / f"{name}.toml"


def load(name: str, env_dir: Path | None = None, sandbox_dir: Path | None = None, resolve: bool = True
         ) -> Environment:
    """Load and validate `environments/<name>.toml`.

    With `resolve`, `{sandbox.*}` placeholders are filled from the running sandbox's state.
    """
    env_dir = env_dir or places.env_dir()
    path = env_path(name, env_dir)
    if not path.is_file():
        known = sorted(p.stem for p in env_dir.glob("*.toml") if not p.stem.endswith(".example"))
        raise ConfigError(str(path), "env", f"no such environment (known: {', '.join(known) or 'none'})")
    return load_file(path, sandbox_dir=sandbox_dir, resolve=resolve)


def load_file(path: Path, sandbox_dir: Path | None = None, resolve: bool = True) -> Environment:
    fname = _display(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(fname, "(file)", f"invalid TOML: {exc}") from exc
    raw.setdefault("name", path.stem)
    if resolve and raw.get("kind") == "sandbox":
        raw = _resolve_placeholders(raw, sandbox_dir or places.sandbox_dir(), fname)
    env = _build(Environment, raw, fname, "")
    env = dataclasses.replace(env, source=str(path))
    validate(env, fname)
    return env


def sandbox_state(sandbox_dir: Path | None = None) -> dict | None:
    state = (sandbox_dir or places.sandbox_dir()) / "state.json"
    if not state.is_file():
        return None
    try:
        return json.loads(state.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _resolve_placeholders(raw: dict, sandbox_dir: Path, fname: str) -> dict:
    state = sandbox_state(sandbox_dir)
    endpoints = (state or {}).get("endpoints", {})

    def sub(value, key):
        if isinstance(value, str):
            def repl(m: re.Match) -> str:
                if m.group(1) not in endpoints:
                    raise ConfigError(fname, key, f"{{sandbox.{m.group(1)}}} is unknown: is the sandbox up? "
                                      "(`shipbook sandbox up`)")
                return str(endpoints[m.group(1)])
            return _PLACEHOLDER.sub(repl, value)
        if isinstance(value, dict):
            return {k: sub(v, f"{key}.{k}" if key else k) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, key) for v in value]
        return value

    return sub(raw, "")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(cls, raw, fname: str, prefix: str):
    """Build a frozen dataclass from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(fname, prefix.rstrip(".") or "(top)", f"expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(fname, full, f"unknown key (allowed: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(hints[key], value, fname, full)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(fname, prefix.rstrip(".") or "(top)", f"missing key: {exc}") from exc


def _coerce(tp, value, fname: str, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, fname, key)
    if dataclasses.is_dataclass(tp):
        if tp is SecretRef:
            return _secret_ref(value, fname, key)
        return _build(tp, value, fname, key + ".")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(fname, key, f"expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, fname, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(fname, key, f"expected a table, got {type(value).__name__}")
        return {k: _coerce(args[1], v, fname, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(fname, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(fname, key, f"expected an integer, got {type(value).__name__}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(fname, key, f"expected a number, got {type(value).__name__}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(fname, key, f"expected a string, got {type(value).__name__}")
        last = key.rsplit(".", 1)[-1]
        if last not in ("secretsmanager", "ssm", "env") and _SECRET_WORDS.search(last) and value:
            raise ConfigError(fname, key, "looks like a secret value: give a reference "
                              "({secretsmanager = ARN} / {ssm = name} / {env = VAR}), never the value")
        return value
    raise ConfigError(fname, key, f"unsupported type {_type_name(tp)}")


def _secret_ref(value, fname: str, key: str) -> SecretRef:
    if isinstance(value, str):
        raise ConfigError(fname, key, "secrets are given by reference only: "
                          "{secretsmanager = ARN} / {ssm = name} / {env = VAR}, never as a value")
    ref = _build(SecretRef, value, fname, key + ".")
    if sum(bool(x) for x in (ref.secretsmanager, ref.ssm, ref.env)) != 1:
        raise ConfigError(fname, key, "give exactly one of secretsmanager, ssm, env")
    return ref


