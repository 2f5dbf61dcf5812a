"""connsync: a platform's cloud connections as code."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Resolved lazily: importlib.metadata costs ~30 ms at every start otherwise.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("connsync")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(name)
