"""robots.txt as RFC 9309 and the major search engines apply it, parsed by Protego.

What this module decides: given the answer to ``GET /robots.txt`` (a status and a body, or the
kind of failure), a :class:`RobotsPolicy` for one host (``scheme://host:port``) and our user
agent. :func:`policy_from_response` and :func:`policy_from_cache` are pure; :func:`fetch_robots`
does its I/O only through the :class:`~crawler.fetch.fetcher.Fetcher` it is given. This module must
not cache policies (``crawler.fetch.gate`` does), sleep, log per URL, or raise for anything a
server sends.

Decisions, with the RFC 9309 section each follows
----------------------------------------------------
* **Which answer means what (§2.3.1).**

  - 2xx: the body is parsed (§2.3.1.1). The ``Content-Type`` is not looked at (Google does not
    either): an HTML page or garbage served as robots.txt is parsed as it is, which in practice
    finds no rules, so everything is allowed.
  - Redirects are followed by the fetcher, up to 5 hops, across hosts (§2.3.1.2); the rules
    found apply to the host we asked. More than 5 hops, a loop, a hop the private-network
    guard refuses, or a 3xx without ``Location``: "unavailable" (the RFC's "MAY assume
    unavailable"), so allow all. Only a refusal of the host's *own* robots.txt request makes
    the host ``refused``: a redirect elsewhere says nothing about the host we asked.
  - 4xx, including 401 and 403: unavailable, allow all (§2.3.1.3). **Except 429**: "too many
    requests" is the server asking us to slow down, so it is treated like a 5xx, as Google
    does; allowing everything at that moment would be the least polite reading.
  - 5xx, or no response at all (DNS, connect, TLS, timeout, a body cut short, a 2xx whose
    body could not be read): **unreachable** (§2.3.1.4): disallow everything for now,
    ``unreachable=True``, ``body=None`` (nothing to cache; keep an older copy), and, when no
    answer came at all (DNS, connect, timeout, TLS), ``failure`` keeps that cause. The caller
    fetches again later; how long it keeps trying before giving up on the host is its policy
    (the RFC allows assuming unavailable after "a reasonably long period", e.g. 30 days).
  - Any other status (1xx, 6xx, ...): unreachable, the cautious reading of an answer the RFC
    does not cover.
* **Size (§2.5).** Only the first :data:`ROBOTS_MAX_BYTES` (512 KiB, over the RFC's "at least
  500 kibibytes") are parsed; the rest is ignored, never an error. When the body was cut, the
  line the cut falls in is dropped too: half of ``Allow: /private-but-public`` would allow more
  than the site allowed. :func:`fetch_robots` asks the fetcher to truncate instead of failing
  (``fetch(..., truncate_body=True)``) and reads the cut from ``content_length`` > body size.
* **Text.** Decoded as UTF-8 with ``errors="replace"`` after removing a UTF-8 BOM (§2.2: the file
  is UTF-8). NUL characters become U+FFFD before parsing, so the text can be stored in
  PostgreSQL (which refuses NUL in ``text``), and a policy rebuilt from the cached text
  (:func:`policy_from_cache`) is the one first built.
* **Which group applies (§2.2.1).** Our product token is the name of the user agent's first
  product (RFC 9110 §10.1.5), lowercased: ``crawler/0.1`` and ``crawler (+https://x/bot)`` →
  ``crawler`` (:func:`crawler.checks.robots_product_token`, which the settings check the user
  agent with). A group applies when the product token on one of its ``User-agent`` lines
  equals ours, case-insensitively; groups with the same
  token are merged; with none, the ``*`` group; with neither, no rule applies. See "Where
  Protego differs" for how this is enforced.
* **Rules (§2.2.2, §2.2.3).** Protego: the longest matching path wins; between an ``Allow`` and
  a ``Disallow`` of equal length, ``Allow``; ``*`` matches any run of characters and a final
  ``$`` anchors the end; paths compare case-sensitively, after normalizing percent-encoding on
  both sides (``/%62az`` is ``/baz``; ``/a%2Fb`` is not ``/a/b``); an empty ``Disallow:`` is no
  rule; ``/robots.txt`` itself is always allowed (§2.2.2). Protego also reads a few misspellings
  (``Dissallow``), ``User agent`` without the dash, and treats ``Allow: /index.html`` as also
  allowing ``/`` (as Google does).
* **Crawl-delay** (not in the RFC; Bing, Yandex and others honour it): the value from the group
  that applies to us (so the ``*`` group's only when no group names us), as Protego reads it;
  a negative, NaN or infinite value, or a non-number, is ignored (None). Capping a huge value
  is the politeness module's job.
* **Sitemaps** (§2.2.4 allows other records): every ``Sitemap:`` value that is an absolute
  ``http``/``https`` URL, in file order, without duplicates; relative ones are dropped (the
  sitemaps protocol requires absolute URLs, and the host to resolve them against is not known
  here).
* **The cached text** (``body``): the decoded, truncated text for a 2xx; ``""`` for an
  unavailable robots.txt (allow all); None when unreachable. §2.4 says a cached copy SHOULD NOT
  be used for more than 24 hours; the refresh interval is the caller's setting.

Where Protego (0.7) differs from RFC 9309, and what we did
-----------------------------------------------------------
* **Group matching is by prefix, not equality.** Protego applies a ``User-agent: crawl`` group
  to the crawler ``crawler`` (it looks for the group's name inside the name it is given, at a
  word start). It also ignores ``User-agent: crawler/1.0`` (which Google's parser, reading the
  leading product token, applies to ``crawler``), and reads ``User-agent: *crawler`` as
  ``crawler`` (Google's does not). **Fixed here** before Protego parses: each ``User-agent``
  line's value is rewritten to ``*`` (a ``*`` alone or followed by a space), to our token (when
  its leading run of letters, digits, ``_`` and ``-``, or its leading RFC 9110 token, equals
  our token, case-insensitively; the second lets a ``my.bot`` crawler be named),
  or else to a name longer than our token, which Protego can never match. Only the text given
  to Protego is rewritten; the cached ``body`` is what the server sent. A ``User-agent`` line in
  a spelling our pattern misses but Protego accepts keeps Protego's matching.
* **Escapes of reserved characters.** RFC 9309 §2.2.2 says a percent-encoded reserved character
  must not be decoded before comparison, so ``/a%3Fb`` (a ``?`` inside a path segment) and
  ``/a?b`` (a query) differ. Protego decodes and re-encodes every escape except ``%2F`` and
  ``%25``, so it treats them as equal. **Kept**: it only makes a rule match a few more URLs
  (a stricter reading), and such paths are rare. A test pins the behaviour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from protego import Protego

from crawler.checks import robots_product_token
from crawler.config import FetchSettings
from crawler.errors import ErrorKind
from crawler.fetch.netguard import PrivateAddressError

if TYPE_CHECKING:
    from crawler.fetch.fetcher import Fetcher

__all__ = [
    "ROBOTS_MAX_BYTES",
    "ROBOTS_MAX_REDIRECTS",
    "RobotsPolicy",
    "fetch_robots",
    "policy_from_cache",
    "policy_from_response",
    "product_token",
    "robots_fetch_settings",
]

ROBOTS_MAX_BYTES = 512 * 1024
"""RFC 9309 §2.5: parse at least 500 KiB; beyond this, the rest is ignored."""
ROBOTS_MAX_REDIRECTS = 5
"""RFC 9309 §2.3.1.2: follow at least five consecutive redirects."""

_NO_ANSWER = frozenset({ErrorKind.DNS, ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.TLS})
"""Failures where no answer came: the host's URLs fail with this kind, not ``robots``."""
_BOM = b"\xef\xbb\xbf"
_UA_LINE = re.compile(r"(?i)^([ \t]*user[- ]?agent[ \t]*(?::[ \t]*|[ \t]+))(.*)$")
_LEADING_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_PRODUCT_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class RobotsPolicy:
    """What robots.txt says for one host (scheme://host:port) and our user agent.

    Immutable once built and safe to share between threads (the parser's lazy state is built
    before the policy is returned).
    """

    crawl_delay: float | None = None
    """Seconds, from the group that applies to us; None if absent or invalid; never negative."""
    sitemaps: tuple[str, ...] = ()
    """Absolute http(s) sitemap URLs from ``Sitemap:`` lines, in file order."""
    body: str | None = None
    """Text to cache in ``hosts.robots_txt``: ``""`` for allow-all (4xx), None if unreachable."""
    unreachable: bool = False
    """5xx, 429, timeout or no connection: disallow everything for now and try again later."""
    refused: str | None = None
    """Why we may not connect to the host at all (a private address): its URLs fail with this."""
    failure: tuple[ErrorKind, str] | None = None
    """When unreachable because no answer came: the kind (``dns``, ``connect``, ``timeout``,
    ``tls``) and message of the fetch's last error, so the host's URLs fail with that cause."""
    _parser: Protego | None = field(default=None, repr=False, compare=False)
    _token: str = field(default="*", repr=False, compare=False)

    def can_fetch(self, url: str) -> bool:
        """True when ``url`` (on this policy's host) may be fetched."""
        if self.unreachable or self.refused:
            return False
        if self._parser is None:
            return True
        try:
            return bool(self._parser.can_fetch(url, self._token))
        except ValueError:  # a URL urllib cannot split; it cannot be fetched either
            return False


def product_token(user_agent: str) -> str:
    """``crawler/0.1 (+https://x/bot)`` → ``crawler``: the first product's name, lowercased.

    Defined once, by :func:`crawler.checks.robots_product_token` (RFC 9110 §10.1.5), which the
    settings also check the user agent with; a ValueError for a value without a product.
    """
    token = robots_product_token(user_agent)
    if token is None:
        raise ValueError(f"user agent {user_agent!r} does not begin with a product token")
    return token


def robots_fetch_settings(settings: FetchSettings) -> FetchSettings:
    """The fetch settings for robots.txt: 5 redirects, a 512 KiB cap, one retry.

    Build the Fetcher with them and ``body_types=None`` (robots.txt is often served with an odd
    type); :func:`fetch_robots` asks it to truncate at the cap instead of failing.
    """
    return replace(
        settings,
        max_redirects=ROBOTS_MAX_REDIRECTS,
        max_body_bytes=ROBOTS_MAX_BYTES,
        retries=min(settings.retries, 1),
    )


def fetch_robots(fetcher: Fetcher, host: str, user_agent: str) -> RobotsPolicy:
    """GET ``host/robots.txt`` with ``fetcher`` and read the answer; never raises for the host.

    ``host`` is ``scheme://host[:port]``. ``fetcher`` should be built with
    :func:`robots_fetch_settings` and ``body_types=None``: a 2xx whose body the fetcher did
    not download reads as an empty file (allow all).
    """
    outcome = fetcher.fetch(host.rstrip("/") + "/robots.txt", truncate_body=True)
    result = outcome.result
    last = outcome.errors[-1] if outcome.failed else None
    error = last.kind if last is not None else None
    if (
        last is not None
        and last.kind is not ErrorKind.REDIRECT  # a refused *hop* is a redirect failure
        and last.message.startswith(PrivateAddressError.__name__)
    ):
        # Not "unreachable, try later": the host itself is off limits, now and later.
        return RobotsPolicy(refused=last.message.partition(": ")[2])
    if result is None:
        policy = policy_from_response(user_agent, None, None, error=error)
        if last is not None and policy.unreachable and last.kind in _NO_ANSWER:
            policy = replace(policy, failure=(last.kind, last.message))
        return policy
    body = result.body
    truncated = body is not None and (result.content_length or 0) > len(body)
    return policy_from_response(
        user_agent, result.status_code, body, error=error, truncated=truncated
    )


def policy_from_response(
    user_agent: str,
    status: int | None,
    body: bytes | None,
    *,
    error: ErrorKind | None = None,
    truncated: bool = False,
) -> RobotsPolicy:
    """The policy for one answer to ``GET /robots.txt`` (see the module docstring).

    ``status`` is None when no response came (then ``error`` says why); ``error`` is the kind of
    the fetch's final error, if it failed; ``truncated`` says ``body`` was cut by the fetcher.
    """
    if error is ErrorKind.REDIRECT or (status is not None and 300 <= status < 400):
        return _allow_all()  # §2.3.1.2: too many redirects → unavailable
    if status is None or status == 429 or not 200 <= status < 500:
        return _unreachable()
    if status >= 400:
        return _allow_all()  # §2.3.1.3: unavailable
    if error is not None:  # a 2xx whose body could not be read (too large, broken, ...)
        return _unreachable()
    return policy_from_cache(user_agent, _decode(body or b"", truncated=truncated))


def policy_from_cache(user_agent: str, body: str) -> RobotsPolicy:
    """The policy for robots.txt text as :attr:`RobotsPolicy.body` stored it (or any text)."""
    token = product_token(user_agent)
    text = body.replace("\0", "\ufffd")
    parser = Protego.parse(_exact_groups(text, token))
    parser.can_fetch("/", token)  # builds Protego's lazy index now, before threads share it
    delay = parser.crawl_delay(token)
    if delay is not None and not (math.isfinite(delay) and delay >= 0):
        delay = None
    return RobotsPolicy(
        crawl_delay=delay,
        sitemaps=_sitemaps(parser.sitemaps),
        body=body,
        _parser=parser,
        _token=token,
    )


def _allow_all() -> RobotsPolicy:
    return RobotsPolicy(body="")


def _unreachable() -> RobotsPolicy:
    return RobotsPolicy(unreachable=True)


def _decode(raw: bytes, *, truncated: bool) -> str:
    """The text of a 2xx body: BOM removed, first ROBOTS_MAX_BYTES, a line cut in two dropped."""
    raw = raw.removeprefix(_BOM)
    if len(raw) > ROBOTS_MAX_BYTES:
        raw, truncated = raw[:ROBOTS_MAX_BYTES], True
    if truncated:
        end = max(raw.rfind(b"\n"), raw.rfind(b"\r"))
        raw = raw[: end + 1]
    return raw.decode("utf-8", errors="replace").replace("\0", "\ufffd")


def _exact_groups(text: str, token: str) -> str:
    """``text`` with every ``User-agent`` value rewritten so Protego matches groups exactly.

    See "Where Protego differs" in the module docstring.
    """
    other = token + "-is-another-agent"  # longer than ``token``: never found inside it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _UA_LINE.match(line)
        if match is None:
            continue
        value = match[2].partition("#")[0].strip()
        if not value:
            continue
        if value[0] == "*" and (len(value) == 1 or value[1].isspace()):
            name = "*"
        else:
            name = token if _names(value, token) else other
        lines[i] = match[1] + name
    return "\n".join(lines)


def _names(value: str, token: str) -> bool:
    """True when a ``User-agent`` value names ``token``: its leading product name (RFC 9110
    token, ``my.bot`` of ``my.bot/2``) or its leading run of letters, digits, ``_`` and ``-``
    (Google's reading, ``crawler`` of ``crawler.bot``) is ``token``, case-insensitively."""
    lead = _LEADING_TOKEN.match(value)
    if lead is not None and lead[0].lower() == token:
        return True
    product = _PRODUCT_NAME.match(value)
    return product is not None and product[0].lower() == token


def _sitemaps(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        url = value.strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            seen.setdefault(url, None)
    return tuple(seen)
