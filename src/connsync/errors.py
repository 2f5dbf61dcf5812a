"""The one exception hierarchy; each error knows its exit code and a hint.

Library code raises these; only the CLI edge (``error_handler``) renders them,
so a message is written once and never carries a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2  # plan --detailed-exitcode only
EXIT_INTERNAL = 3
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130


class ConnsyncError(Exception):
    """An expected failure: rendered as one line (and an optional hint), exit 1."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ConnsyncError):
    exit_code = EXIT_USAGE


class ConfigError(ConnsyncError):
    pass


class SopsError(ConnsyncError):
    """sops failed on a file; the message names the file and what to do."""


class StoreError(ConnsyncError):
    pass


class StoreUnavailable(StoreError):
    """The store stopped answering, went away or refuses every further write (disk full).

    Unlike a refusal of one record, nothing more can be written: an apply ends early and
    reports what the store holds. ``in_doubt``: the write under way may still land (a server
    given up on while it held the write), whatever the store shows right now.
    """

    def __init__(self, message: str, *, hint: str | None = None, in_doubt: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.in_doubt = in_doubt


class LockError(StoreError):
    pass


class LockLost(LockError):
    """The workspace lock was lost while this process held it: it writes nothing more."""


class VersionConflict(StoreError):
    """A record moved between read and write (optimistic concurrency)."""


class StalePlan(ConnsyncError):
    pass
