"""Print constraints.txt: the installed version of every distribution the project pulls in.

Run with the Python of a venv where the suite just passed (``make constraints`` uses the
``make test-latest`` venv). Walks the requirements of the installed ``crawler`` distribution
and its extras (dev, bench, postgres) through their dependencies, markers evaluated for this
interpreter, so tools installed in the venv by hand do not end up pinned. Standard library and
``packaging`` (a dependency of pytest and build) only.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ("dev", "bench", "postgres")
HEADER = """\
# The versions the whole suite last passed with (Python {python}): `pip install -c constraints.txt`.
# CI (.ci/run), `make install` and the README install from it, so a new upstream release cannot
# break a fresh clone; `make test-latest` tries the newest versions pyproject.toml allows.
# Regenerate after `make test-latest` passes (see CONTRIBUTING.md, "Dependencies"):
#   make constraints
# It holds what the package and its extras (dev, bench, postgres) pull in, nothing else."""


def _wanted(requirement: str, extras: set[str]) -> Requirement | None:
    req = Requirement(requirement)
    envs = [{"extra": extra} for extra in ("", *sorted(extras))]
    if req.marker is None or any(req.marker.evaluate(env) for env in envs):
        return req
    return None


def closure() -> dict[str, str]:
    """Name -> installed version of everything ``crawler[dev,bench,postgres]`` needs."""
    todo = [(req, set(EXTRAS)) for req in [Requirement("crawler")]]
    extras_seen: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        extras = extras | set(req.extras)
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        extras_seen[name] = extras_seen.get(name, set()) | extras
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue  # a marker-less optional dependency that is not installed here
        if name != "crawler":
            versions[dist.metadata["Name"]] = dist.version
        for line in dist.requires or []:
            sub = _wanted(line, extras_seen[name])
            if sub is not None:
                todo.append((sub, set()))
    return versions


def main() -> None:
    python = ".".join(map(str, sys.version_info[:2]))
    print(HEADER.format(python=python))
    for name, version in sorted(closure().items(), key=lambda item: item[0].lower()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
