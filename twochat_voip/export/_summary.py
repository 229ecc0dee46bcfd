"""What an export did: :class:`ExportSummary`, and why a run stopped, in words."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from twochat_voip._errors import (
    AuthenticationError,
    BudgetExhaustedError,
    PaymentRequiredError,
    TwoChatError,
)


@attrs.frozen(kw_only=True)
class ExportSummary:
    """What an export did.

    Attributes:
        exported: Final records written by this run (see
            :attr:`~twochat_voip.CallDetailRecord.is_final`).
        already_there: Ids skipped because the output already held their final record.
        failed: Ids that could not be fetched (kept in the failures file, or table).
        requests: HTTP requests sent (each costs a credit), retries included.
        rate_limited: Answers that were 429.
        retries: Attempts made after a record's first.
        seconds: Wall time.
        stopped: Why the run gave up early (nothing more was sent), if it did.
        duplicates: Ids skipped because the input had named them before.
        output: Where the records went (a database's password hidden).
        failures: Where the failures are kept.
        pending: Records of calls not over yet: not written to a file or standard
            output, a database's row updated; a later run asks for them again.
        not_found_before: Ids skipped because a past run found them 404
            (``retry_not_found=True`` asks again).
        by_other_hosts: Ids another export into the same database fetched meanwhile.
    """

    exported: int
    already_there: int
    failed: int
    requests: int
    rate_limited: int
    retries: int
    seconds: float
    stopped: str | None = None
    duplicates: int = 0
    output: str = ""
    failures: str = ""
    pending: int = 0
    not_found_before: int = 0
    by_other_hosts: int = 0

    def describe(
        self, output: str | os.PathLike[str] | None = None, failures: Path | None = None
    ) -> str:
        """A one-paragraph account for the end of a run."""
        lines = [f"exported {self.exported} records to {output or self.output}"]
        counts = (
            (self.already_there, "already there"),
            (self.by_other_hosts, "done by other hosts"),
            (self.duplicates, "given twice"),
        )
        if skipped := [f"{count} {what}" for count, what in counts if count]:
            lines[0] += f" ({', '.join(skipped)})"
        if self.pending:
            lines.append(f"{self.pending} pending: calls not over yet; a later run asks again")
        if self.not_found_before:
            lines.append(
                f"{self.not_found_before} known not found, skipped (--retry-not-found asks again)"
            )
        if self.failed:
            lines.append(f"{self.failed} failed; ids and reasons in {failures or self.failures}")
        plural = "" if self.requests == 1 else "s"
        lines.append(
            f"{self.requests} request{plural} ({self.rate_limited} answered 429, "
            f"{self.retries} retries) in {self.seconds:.1f} s"
        )
        if self.stopped:
            lines.append(f"stopped early, nothing more was sent: {self.stopped}")
        return "\n".join(lines)


def why_stopped(error: BaseException | None) -> str:
    again = "run the same command again to resume"
    if isinstance(error, AuthenticationError):
        return f"the API key was refused (401); fix it, then {again}"
    if isinstance(error, PaymentRequiredError):
        return f"the account has no credits left (402); top it up, then {again}"
    if isinstance(error, BudgetExhaustedError):
        return f"the --max-requests budget ({error.max_requests}) is spent; {again} with a new one"
    shown = str(error) if isinstance(error, TwoChatError) else repr(error)
    if shown.startswith("nothing succeeded"):  # no attempt failed: the requests hung
        return f"{shown}; {again}"
    return f"nothing succeeded for --give-up-after seconds (last error: {shown}); {again}"
