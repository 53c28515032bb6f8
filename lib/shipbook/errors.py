"""One error hierarchy. Every failure shipbook reports is a ShipbookError with an exit code.

Exit codes (documented in the README and `shipbook --help`):
0 done, 1 a gate stopped the release, 2 bad input or config, 3 infrastructure or internal failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the row type lives with the phase result, which raises GateError
    from shipbook.result import Check

EXIT_OK = 0
EXIT_GATE = 1
EXIT_INPUT = 2
EXIT_INFRA = 3


class ShipbookError(Exception):
    """Base class. `exit_code` tells the CLI how to leave."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(ShipbookError):
    """Bad input from the user: a field and the reason it is wrong."""

    exit_code = EXIT_INPUT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigError(InputError):
    """An environment file is invalid: `file: key: reason`."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        ShipbookError.__init__(self, f"{file}: {key}: {reason}")
        self.file = file
        self.field = key
        self.reason = reason


class LockHeldError(ShipbookError):
    """Another release holds the environment's lock."""

    exit_code = EXIT_INPUT

    def __init__(self, env: str, owner: str, run_id: str, expires: str) -> None:
        super().__init__(
            f"environment {env!r} is locked by {owner} (run {run_id}, expires {expires}); "
            f"wait for it, or `shipbook unlock --env {env}` if it is stale"
        )
        self.env = env
        self.owner = owner
        self.run_id = run_id
        self.expires = expires


def _short(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters (an error stays one line)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class GateError(ShipbookError):
    """A phase's gate blocked: lists every blocking check."""

    exit_code = EXIT_GATE

    def __init__(self, phase: str, failed: Sequence[Check], message: str = "") -> None:
        names = "; ".join(f"{f.id} ({f.verdict})" + (f": {_short(f.summary)}" if f.summary else "")
                          for f in failed) or "no checks named"
        super().__init__(message or f"phase {phase} blocked the release: {names}")
        self.phase = phase
        self.failed = list(failed)


class PhaseError(ShipbookError):
    """A phase notebook raised: names the phase, the cell and the error."""

    exit_code = EXIT_GATE

    def __init__(self, phase: str, cell: str, error: str, notebook: str = "") -> None:
        super().__init__(f"phase {phase} failed in cell {cell}: {error}" + (f" (see {notebook})" if notebook else ""))
        self.phase = phase
        self.cell = cell
        self.error = error
        self.notebook = notebook


class PhaseInfraError(PhaseError):
    """A phase could not run: AWS or another outside system failed in a cell, the kernel died, a cell timed out."""

    exit_code = EXIT_INFRA


class AwsError(ShipbookError):
    """An AWS call failed. Raised only by shipbook.aws, translated from botocore."""

    def __init__(self, service: str, operation: str, code: str, message: str) -> None:
        super().__init__(f"AWS {service}.{operation} failed: {code}: {message}")
        self.service = service
        self.operation = operation
        self.code = code


class InfraError(ShipbookError):
    """Something outside shipbook failed: a process, a remote, a kernel."""


class AuditError(ShipbookError):
    """The audit trail does not verify."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(f"audit found {len(problems)} problem(s): " + "; ".join(problems[:5]))
        self.problems = list(problems)
