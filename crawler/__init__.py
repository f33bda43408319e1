"""crawler: a polite, streaming web crawler that leaves behind a queryable database."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``__version__``, read on first use: ``importlib.metadata`` costs ~25 ms of start-up that
    a crawl never needs (only ``--version``, ``report`` and ``warc`` show the version)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("crawler")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
