"""User-facing errors: raised where a bad value enters, printed by the CLI as one paragraph."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RestoreError(Exception):
    """An error the user can act on. The CLI prints its message without a traceback."""


class OptionError(RestoreError):
    """A problem in an option file: wrong key, wrong type, missing key, bad value."""


class DataError(RestoreError):
    """A problem with data on disk: missing folder, unreadable or corrupt file, mismatched pairs."""


class CheckpointError(RestoreError):
    """A checkpoint that cannot be read safely or does not fit the network."""


class RegistryError(OptionError, KeyError):
    """Unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


def closest(name: str, candidates: Iterable[str], n: int = 1) -> list[str]:
    """The candidates that look most like `name` (case-insensitive), best first."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean 'x'?' or an empty string."""
    hits = closest(name, candidates)
    return f" Did you mean '{hits[0]}'?" if hits else ""
