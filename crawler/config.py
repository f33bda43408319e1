"""Typed, frozen settings: defaults in code < ``settings.toml`` < ``CRAWLER_*`` env < CLI flags.

One frozen dataclass per section of ``settings.toml``; :class:`Config` holds them. Each component
receives only its own section. The defaults live here; ``settings.toml`` at the repository root is
their documented copy, and a test keeps the two equal. Unknown keys and wrong types are
:class:`~crawler.errors.ConfigError` naming the key and where it came from, because a typo in a
settings file that silently does nothing is the worst kind of bug a user can meet.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from crawler.checks import (
    coerce,
    domain_problem,
    field_types,
    parse_env,
    regex_problem,
    user_agent_problem,
)
from crawler.errors import ConfigError
from crawler.urls import mask_credentials

ENV_PREFIX = "CRAWLER_"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CrawlSettings:
    workers: int = 16
    """Fetcher threads in the pool."""
    max_in_flight: int = 0
    """Futures the dispatcher keeps submitted at once; 0 means 2 x workers."""
    max_pages: int = 0
    """Stop after this many pages fetched in this run; 0 means no limit."""
    max_depth: int = 0
    """Links further than this from a seed are not fetched; 0 means no limit."""
    user_agent: str = "crawler/0.1"
    """Sent with every request; begins with a product (RFC 9110), mybot/1.0 or mybot: robots.txt
    groups match its name, "mybot". Add a contact URL: ``mybot/1.0 (+https://example.com/bot)``."""
    max_time_s: float = 0.0
    """Stop gracefully after this many seconds; 0 means no limit."""
    shutdown_grace: float = 10.0
    """Seconds fetches in flight may take to finish after Ctrl-C or a limit; then they are
    given back to the frontier for the next run."""
    progress_interval: float = 10.0
    """Seconds between progress log lines when stderr is not a terminal."""
    lease_timeout: float = 600.0
    """Seconds a claimed URL stays reserved for its process; on a shared PostgreSQL database,
    a dead worker's URLs go back to the frontier after this long."""
    parse_processes: int = -1
    """Processes that parse pages beside the fetcher threads, so a crawl uses more than one
    core; -1 means one per CPU beyond the first (at most 4), 0 parses in the fetcher threads."""


@dataclass(frozen=True, slots=True)
class ScopeSettings:
    allowed_domains: tuple[str, ...] = ()
    """Domains (and their subdomains) whose pages may be fetched, besides the seeds' hosts: names
    alone, ``example.com``, no scheme, port or ``*``."""
    follow_external: bool = False
    """Fetch links to any host, not only the seeds' hosts and ``allowed_domains``."""
    include: tuple[str, ...] = ()
    """Regular expressions; when any is given, a URL must match one of them to be fetched."""
    exclude: tuple[str, ...] = ()
    """Regular expressions; a URL that matches any of them is never fetched."""
    sort_query: bool = False
    """Sort query parameters in canonical URLs (treats ?a=1&b=2 and ?b=2&a=1 as one page)."""
    strip_tracking: bool = False
    """Drop tracking parameters (utm_*, gclid, fbclid, ...) from canonical URLs."""
    follow_nofollow: bool = False
    """Follow links marked rel=nofollow (they are always recorded in links, with nofollow set)."""
    max_pages_per_host: int = 0
    """Stop fetching from a host after this many pages in one run; 0 means no limit."""
    use_sitemaps: bool = False
    """Queue the URLs of the sitemaps that robots.txt lists (seeds ending .xml are always read)."""
    allow_private_networks: bool = False
    """Fetch hosts that resolve to private, loopback or link-local addresses even when no seed
    is on them. Off by default so the crawler cannot be turned against the network it runs in."""


@dataclass(frozen=True, slots=True)
class PolitenessSettings:
    obey_robots: bool = True
    """Obey robots.txt (RFC 9309). Turn off only for sites you own or are allowed to crawl
    regardless."""
    delay: float = 0.5
    """Seconds between the starts of two requests to one host (Crawl-delay wins when larger)."""
    per_host_concurrency: int = 2
    """Requests in flight at once to one host."""
    robots_ttl: float = 86400.0
    """Seconds a host's robots.txt is trusted before it is fetched again."""


@dataclass(frozen=True, slots=True)
class FetchSettings:
    connect_timeout_s: float = 10.0
    """Seconds to establish a connection."""
    read_timeout_s: float = 30.0
    """Seconds to wait for any single read from the socket."""
    total_timeout: float = 60.0
    """Seconds one request may take in all, body included (a drip-feeding server is cut off).
    Named as the issues name it; in seconds."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Decoded bytes of body kept; a larger body is cut, recorded as too_large and not parsed."""
    max_redirects: int = 10
    """Redirect hops followed before the fetch fails with a redirect error."""
    retries: int = 3
    """Retries after the first attempt, for connection errors, timeouts, 429 and 5xx (500-504)."""
    backoff_base_s: float = 0.5
    """First backoff wait; doubles on each retry, with random jitter."""
    backoff_max_s: float = 10.0
    """Longest backoff wait between two attempts."""
    max_retry_after_s: float = 60.0
    """Longest Retry-After honoured; a server asking for more gets a final error instead."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    db: str = "crawl.db"
    """A file path (SQLite) or a SQLAlchemy URL such as postgresql+psycopg://user@host/db."""
    batch_rows: int = 500
    """The writer commits after this many pages..."""
    batch_ms: int = 200
    """...or after this many milliseconds, whichever comes first."""
    queue_size: int = 1000
    """Results waiting for the writer; when full, fetchers wait (backpressure, bounded memory)."""
    keep_html: bool = False
    """Store each fetched HTML body, zlib-compressed, with its headers, in the bodies table."""
    keep_text: bool = False
    """Store each page's visible text in fetches.text (navigation and scripts left out), and
    index it for full-text search (SQLite FTS5)."""


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    policy: str = "fixed"
    """How the next fetch of a page is scheduled: "fixed" or "adaptive"."""
    default_interval: float = 86400.0
    """Seconds from one fetch of a page to the next, for recrawls (the first interval, for
    "adaptive"; a sitemap's changefreq gives a page its own)."""
    min_interval: float = 3600.0
    """Shortest interval "adaptive" shrinks to (seconds)."""
    max_interval: float = 30 * 86400.0
    """Longest interval "adaptive" grows to, and the longest back-off after failures (seconds)."""
    gone_after: int = 3
    """Consecutive 404/410 answers after which a URL is gone and no longer scheduled."""


@dataclass(frozen=True, slots=True)
class ExtractRule:
    """``[extract.<name>]``: one value of ``fetches.data``, taken from every HTML page."""

    name: str
    selector: str
    """A CSS selector (soupsieve, as BeautifulSoup's ``select``)."""
    attribute: str | None = None
    """Take this attribute of the match instead of its text."""
    many: bool = False
    """A list of every match, instead of the first match (or null)."""
    url_pattern: str | None = None
    """A regular expression: the rule runs only on pages whose URL it matches (re.search)."""


@dataclass(frozen=True, slots=True)
class ExtractSettings:
    """``[extract]``: declarative rules, and an optional hook for code."""

    rules: tuple[ExtractRule, ...] = ()
    hook: str | None = None
    """``"package.module:function"``, called as ``function(url, soup, response) -> dict``."""


@dataclass(frozen=True, slots=True)
class Config:
    crawl: CrawlSettings = field(default_factory=CrawlSettings)
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    politeness: PolitenessSettings = field(default_factory=PolitenessSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    extract: ExtractSettings = field(default_factory=ExtractSettings)


_SECTION_TYPES: dict[str, type[Any]] = {
    "crawl": CrawlSettings,
    "scope": ScopeSettings,
    "politeness": PolitenessSettings,
    "fetch": FetchSettings,
    "store": StoreSettings,
    "schedule": ScheduleSettings,
}

# Range checks: (predicate, what it must be). A negative worker count is a typo, not a wish.
_CHECKS: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("crawl", "workers"): (lambda v: 1 <= v <= 1024, "between 1 and 1024"),
    ("crawl", "max_in_flight"): (lambda v: v >= 0, ">= 0"),
    ("crawl", "max_pages"): (lambda v: v >= 0, ">= 0"),
    ("crawl", "max_depth"): (lambda v: v >= 0, ">= 0"),
    ("crawl", "max_time_s"): (lambda v: v >= 0, ">= 0"),
    ("crawl", "shutdown_grace"): (lambda v: v >= 0, ">= 0"),
    ("crawl", "progress_interval"): (lambda v: v > 0, "> 0"),
    ("crawl", "lease_timeout"): (lambda v: v > 0, "> 0"),
    ("crawl", "parse_processes"): (lambda v: v >= -1, ">= -1"),
    ("politeness", "delay"): (lambda v: v >= 0, ">= 0"),
    ("politeness", "per_host_concurrency"): (lambda v: v >= 1, ">= 1"),
    ("politeness", "robots_ttl"): (lambda v: v >= 0, ">= 0"),
    ("scope", "max_pages_per_host"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "connect_timeout_s"): (lambda v: v > 0, "> 0"),
    ("fetch", "read_timeout_s"): (lambda v: v > 0, "> 0"),
    ("fetch", "total_timeout"): (lambda v: v > 0, "> 0"),
    ("fetch", "max_body_bytes"): (lambda v: v >= 1, ">= 1"),
    ("fetch", "max_redirects"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "retries"): (lambda v: 0 <= v <= 100, "between 0 and 100"),
    ("fetch", "backoff_base_s"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "backoff_max_s"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "max_retry_after_s"): (lambda v: v >= 0, ">= 0"),
    ("store", "db"): (lambda v: bool(v.strip()), "a path or a database URL"),
    ("store", "batch_rows"): (lambda v: v >= 1, ">= 1"),
    ("store", "batch_ms"): (lambda v: v >= 1, ">= 1"),
    ("store", "queue_size"): (lambda v: v >= 1, ">= 1"),
    ("schedule", "policy"): (lambda v: v in ("fixed", "adaptive"), '"fixed" or "adaptive"'),
    ("schedule", "default_interval"): (lambda v: v > 0, "> 0"),
    ("schedule", "min_interval"): (lambda v: v > 0, "> 0"),
    ("schedule", "max_interval"): (lambda v: v > 0, "> 0"),
    ("schedule", "gone_after"): (lambda v: v >= 1, ">= 1"),
}


# ------------------------------------------------------------------ values that cannot work

# Values that cannot work although their type and range are right: each returns what is wrong,
# or None. Checked where the value is read, like _CHECKS, so nothing is created before.
_PROBLEMS: dict[tuple[str, str], typing.Callable[[Any], str | None]] = {
    ("crawl", "user_agent"): user_agent_problem,
    ("scope", "include"): lambda v: _first_problem(v, regex_problem),
    ("scope", "exclude"): lambda v: _first_problem(v, regex_problem),
    ("scope", "allowed_domains"): lambda v: _first_problem(v, domain_problem),
}


def _first_problem(
    values: tuple[str, ...], problem: typing.Callable[[str], str | None]
) -> str | None:
    return next((p for p in map(problem, values) if p is not None), None)


Overrides = Mapping[str, Mapping[str, Any]]
"""``{"crawl": {"workers": 8}}``: values already of the right type (from CLI flags)."""


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
    base: Mapping[str, Any] | None = None,
    base_source: str = "stored settings",
    flag_names: Mapping[tuple[str, str], str] | None = None,
    on_ignored: typing.Callable[[str], None] | None = None,
) -> Config:
    """Resolve settings once: defaults < ``base`` < ``path`` (TOML) < ``CRAWLER_<SECTION>_<KEY>``
    < flags. ``base`` is the settings a resumed crawl ran with (``crawls.settings``): keys this
    version no longer knows are skipped, so an old database can always be resumed.
    ``flag_names`` maps ``(section, key)`` to the flag an override came from, for messages.
    A ``CRAWLER_*`` variable that is not a setting (no section of that name) is passed to
    ``on_ignored``, which logs a warning by default."""
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_TYPES}
    stored = _merge_base(values, base, base_source) if base else {}
    file_extract = None
    if path is not None:
        file_extract = _merge_file(values, path)
    _merge_env(values, os.environ if env is None else env, on_ignored or warn_ignored)
    for section, items in (overrides or {}).items():
        for key, value in items.items():
            if value is not None:
                flag = (flag_names or {}).get((section, key))
                where = f"command line: {flag + ' ' if flag else ''}[{section}] {key}"
                values[section][key] = _check_range(section, key, value, where)
    for (section, key), (value, where) in stored.items():
        if values[section][key] is value:  # not replaced by the file, a variable or a flag
            _check_problem(section, key, value, where)
    sections = {name: cls(**values[name]) for name, cls in _SECTION_TYPES.items()}
    extract = ExtractSettings()
    if base and isinstance(base.get("extract"), Mapping):
        extract = _extract_settings(base["extract"], base_source, stored=True)
    if file_extract is not None:
        extract = _extract_settings(file_extract, str(path))
    return Config(**sections, extract=extract)


def _merge_base(
    values: dict[str, dict[str, Any]], base: Mapping[str, Any], source: str
) -> dict[tuple[str, str], tuple[Any, str]]:
    """Merge a stored crawl's settings; return those that :data:`_PROBLEMS` checks, with where
    they came from. They are checked once the other layers are merged: a value an older
    version accepted (a user agent without a product token) can then be replaced by a flag
    instead of making the database impossible to resume."""
    deferred: dict[tuple[str, str], tuple[Any, str]] = {}
    for section, table in base.items():
        cls = _SECTION_TYPES.get(section)
        if cls is None or not isinstance(table, Mapping):
            continue
        types_ = field_types(cls)
        for key, value in table.items():
            if key in types_:
                where = f"{source}: [{section}] {key}"
                value = coerce(value, types_[key], where)
                values[section][key] = _check_range(section, key, value, where, problems=False)
                if (section, key) in _PROBLEMS:
                    deferred[(section, key)] = (values[section][key], where)
    return deferred


def _check_range(section: str, key: str, value: Any, where: str, *, problems: bool = True) -> Any:
    """Checked where the value is read, so the error names its file, variable or flag."""
    check = _CHECKS.get((section, key))
    if check is not None and not check[0](value):
        raise ConfigError(f"{where} must be {check[1]}, got {value!r}")
    if problems:
        _check_problem(section, key, value, where)
    return value


def _check_problem(section: str, key: str, value: Any, where: str) -> None:
    problem = _PROBLEMS.get((section, key))
    found = problem(value) if problem is not None else None
    if found is not None:
        raise ConfigError(f"{where}: {found}")


def _merge_file(values: dict[str, dict[str, Any]], path: Path) -> Any:
    """Merge the file's sections into ``values``; return its ``[extract]`` table, if any."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"settings file '{path}' not found") from None
    except IsADirectoryError:
        raise ConfigError(f"settings file '{path}' is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file '{path}': {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file '{path}' is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"settings file '{path}' is not valid UTF-8 text") from None
    extract = data.pop("extract", None)
    for section, table in data.items():
        cls = _SECTION_TYPES.get(section)
        if cls is None:
            known = ", ".join(f"[{s}]" for s in (*_SECTION_TYPES, "extract"))
            raise ConfigError(f"{path}: unknown section [{section}] (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{section}' must be a [{section}] table")
        types_ = field_types(cls)
        for key, value in table.items():
            if key not in types_:
                raise ConfigError(f"{path}: unknown key '{key}' in [{section}]")
            where = f"{path}: [{section}] {key}"
            values[section][key] = _check_range(
                section, key, coerce(value, types_[key], where), where
            )
    return extract


_FILE_ONLY_SECTIONS: Final = ("extract",)
"""Sections of tables (``[extract.<name>]``; ``[hosts."HOST"]`` when it comes) that no
variable can set: a ``CRAWLER_EXTRACT_...`` variable is a mistake to report, not to ignore."""


def _env_setting(var: str) -> tuple[str, str] | None:
    """``(section, key)`` that ``CRAWLER_<SECTION>_<KEY>`` names, or None when the text after
    the prefix starts with no section name (``CRAWLER_CMD``, ``CRAWLER_HOME``: other tools' own
    variables). Section names are tried longest first, so one holding ``_`` (``fetch_tls``)
    wins over a shorter one it starts with (``fetch``); a key may hold ``_`` too."""
    rest = var[len(ENV_PREFIX) :].lower()
    for section in sorted((*_SECTION_TYPES, *_FILE_ONLY_SECTIONS), key=len, reverse=True):
        if rest == section or rest.startswith(section + "_"):
            return section, rest[len(section) + 1 :]
    return None


def warn_ignored(var: str) -> None:
    """Say, in one log line, that ``var`` is not a setting and is ignored."""
    log.warning(
        "ignoring environment variable %s: not a setting (settings are CRAWLER_<SECTION>_<KEY>, "
        "sections: %s)",
        var,
        ", ".join(_SECTION_TYPES),
    )


def _merge_env(
    values: dict[str, dict[str, Any]],
    env: Mapping[str, str],
    on_ignored: typing.Callable[[str], None] = warn_ignored,
) -> None:
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        setting = _env_setting(var)
        if setting is None:
            on_ignored(var)
            continue
        section, key = setting
        if section in _FILE_ONLY_SECTIONS:
            raise ConfigError(
                f"environment variable {var}: [{section}] cannot be set from the environment; "
                "write it in the settings file"
            )
        if not key:
            raise ConfigError(
                f"environment variable {var}: names [{section}] but no key "
                "(expected CRAWLER_<SECTION>_<KEY>)"
            )
        cls = _SECTION_TYPES[section]
        types_ = field_types(cls)
        if key not in types_:
            raise ConfigError(f"environment variable {var}: unknown key '{key}' in [{section}]")
        where = f"environment variable {var}"
        values[section][key] = _check_range(
            section, key, parse_env(text, types_[key], where), where
        )


def as_dict(config: Config) -> dict[str, Any]:
    """The settings as JSON-ready data, for the ``crawls.settings`` column, which every reader
    of the database sees: a database URL's credentials are masked there (every command that
    needs the database is given it again, so nothing reads the stored one back)."""
    data = dataclasses.asdict(config)
    data["store"]["db"] = mask_credentials(config.store.db)
    return data


_RULE_KEYS = {"selector", "attribute", "many", "url_pattern"}


def _extract_settings(table: Any, source: str, *, stored: bool = False) -> ExtractSettings:
    """``[extract]`` from a file (or a stored crawl's settings): rules and the hook, checked."""
    if stored:  # as_dict() wrote {"rules": [...], "hook": ...}
        rules = tuple(
            ExtractRule(**{k: v for k, v in r.items() if k in ExtractRule.__slots__})
            for r in table.get("rules", ())
            if isinstance(r, Mapping)
        )
        stored_hook = table.get("hook")
        return ExtractSettings(rules, stored_hook if isinstance(stored_hook, str) else None)
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'extract' must be a table: [extract.<name>] per rule")
    found: list[ExtractRule] = []
    hook: str | None = None
    for name, rule in table.items():
        where = f"{source}: [extract.{name}]"
        if name == "hook":
            if not isinstance(rule, str) or ":" not in rule:
                raise ConfigError(f'{source}: [extract] hook must be "package.module:function"')
            hook = rule
            continue
        if not isinstance(rule, dict):
            raise ConfigError(f"{where} must be a table with a selector")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}'")
        selector = rule.get("selector")
        if not isinstance(selector, str) or not selector.strip():
            raise ConfigError(f"{where}: selector must be a CSS selector string")
        attribute = rule.get("attribute")
        if attribute is not None and not isinstance(attribute, str):
            raise ConfigError(f"{where}: attribute must be a string")
        many = rule.get("many", False)
        if not isinstance(many, bool):
            raise ConfigError(f"{where}: many must be true or false")
        pattern = rule.get("url_pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise ConfigError(f"{where}: url_pattern must be a regular expression string")
        try:  # compiled again by crawler.parse.extract; checked here so nothing is created first
            re.compile(pattern or "")
        except re.error as exc:
            raise ConfigError(f"{where} url_pattern {pattern!r}: {exc}") from None
        found.append(ExtractRule(name, selector, attribute, many, pattern))
    return ExtractSettings(tuple(found), hook)
