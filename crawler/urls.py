"""Canonical URLs, WHATWG link resolution, and crawl scope: pure functions, no I/O.

Every URL the crawler stores, deduplicates or fetches goes through :func:`canonicalize` (a seed)
or :func:`resolve_link` (a link found on a page), so two spellings of one resource become one
``urls.url`` row. Parsing is the WHATWG URL Standard's, done by ``ada_url`` (a C++ parser that
passes the web-platform-tests), because links must resolve exactly as a browser resolves them;
``urllib.parse.urljoin`` does not (backslashes, ``http:foo``, tabs and newlines, IDNA, IPv4
forms, ...). This module must not do I/O, keep state, or import anything from ``crawler`` but
the standard library and its two parsers.

What the canonical form normalizes, and why
-------------------------------------------
The URL requested is the URL stored, and it is the one a browser would request: the WHATWG
serialization (ada's ``href``) of the link, with only the changes listed here. Anything else
(re-escaping ``[ ] { } | ^ `` ` or a lone ``%``, uppercasing escapes, ...) would send the server
a different request than a browser sends, and some servers answer it differently.

Done by the WHATWG parser (ada), exactly as a browser would before sending the request:

- scheme and host lowercased; the host IDNA-encoded (``faß.example`` → ``xn--fa-hia.example``),
  IPv4 forms normalized (``0xC0.0250.01`` → ``192.168.0.1``), IPv6 compressed;
- the default port removed (``:80`` for http, ``:443`` for https);
- ``.`` and ``..`` segments (also ``%2e`` forms) resolved, backslashes read as ``/``;
- characters in the URL Standard's encode sets percent-encoded as UTF-8 (spaces, controls,
  non-ASCII, ``"`` ``<`` ``>``, ``'`` in a query, ...); an empty path becomes ``/``; tabs and
  newlines removed, outer spaces trimmed. What the standard leaves raw stays raw: ``/foo%``,
  ``%2z``, ``[x]`` in a path, ``{`` ``}`` ``|`` `` ` `` in a query.

The policy on top of that serialization, the only changes made here (RFC 3986 §6.2.2 says
each one names the same resource, or the request never carries the part):

1. the fragment dropped (it never reaches the server), and an empty query's ``?`` dropped;
2. userinfo (``user:pass@``) dropped: credentials a page publishes in a link or a sitemap must
   not be sent, stored or logged (seeds with credentials are refused instead, see
   :func:`has_userinfo`; log other text through :func:`mask_credentials`);
3. percent-escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``) decoded: ``%7Euser`` →
   ``~user``; every other escape kept exactly as written (``%2f`` stays ``%2f``: ``/a%2Fb`` and
   ``/a/b`` are different resources). One exception keeps a lone ``%`` lone: a hex digit's
   escape right after ``%`` or ``%`` and one hex digit stays (``%%34%31`` → ``%%341``, not
   ``%41``, which a server would read as ``A``);
4. only when configured: ``sort_query=True`` sorts parameters by name (stable: repeated names
   keep their relative order); ``strip_tracking=True`` drops analytics parameters
   (:data:`TRACKING_PARAMS`, any ``utm_*``). By default the order is kept, since servers may
   care. ``+`` and ``%20`` are left apart: the form encoding that makes them equal is the
   server's business.

``tests/test_urls.py`` checks this against the web-platform-tests URL data: every http(s) case
resolved through a page with ``<base href>`` gives the standard's ``href`` with this policy
applied, but for the listed exceptions. A trailing dot in a host (``example.com.``) is kept, as
browsers keep it. A host that fails IDNA is rejected, but an ASCII ``xn--`` label is taken as
it is, without decoding (ada's behaviour, and Chrome's and Firefox's: whatwg/url#438), so
``http://xn--pokxncvks/`` is accepted although the standard of 2023 fails it. The canonical
form is a fixed point: ``canonicalize(canonicalize(u)) == canonicalize(u)``, tested with
hypothesis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

import ada_url

__all__ = [
    "TRACKING_PARAMS",
    "Scope",
    "canonicalize",
    "has_userinfo",
    "host_key",
    "mask_credentials",
    "resolve",
    "resolve_link",
    "without_userinfo",
]

#: Query parameters that only feed analytics; dropped when ``strip_tracking=True``, together with
#: every parameter whose name starts with ``utm_``. Names are compared case-insensitively.
TRACKING_PARAMS: Final = frozenset(
    {"gclid", "fbclid", "msclkid", "dclid", "mc_cid", "mc_eid", "_ga", "yclid"}
)

_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
_HTML_WHITESPACE: Final = "\t\n\f\r "  # HTML's "ASCII whitespace"; str.strip() would take more
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_MAX_SHOWN: Final = 100  # characters of a bad URL quoted in an error message

_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# A percent-escape of an unreserved character, the only escapes the canonical form decodes. Those
# of hex digits are left alone right after a ``%`` or a ``%`` and one hex digit (``%%34%31``,
# ``%4%31``): a ``%`` that starts no escape must not become the start of one (``%41``), or the
# request would change meaning, and a second pass would decode again.
_UNRESERVED_ESCAPE: Final = re.compile(
    r"%(?:[46][7-9A-Fa-f]|[57][0-9Aa]|2[DdEe]|5[Ff]|7[Ee])"  # G-Z g-z - . _ ~
    r"|(?<!%)(?<![%][0-9A-Fa-f])%(?:3[0-9]|[46][1-6])"  # 0-9 A-F a-f
)


def _decode_escape(match: re.Match[str]) -> str:
    return chr(int(match[0][1:], 16))


def _usv(text: str) -> str:
    """Lone surrogates → U+FFFD, as a browser's USVString conversion does; UTF-8 refuses them."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _not_http(url: str) -> ValueError:
    shown = mask_credentials(url)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 1] + "…"
    return ValueError(f"not an absolute http(s) URL: {shown!r}")


def _query_param_name(param: str) -> str:
    return param.partition("=")[0]


def _filter_query(query: str, sort_query: bool, strip_tracking: bool) -> str:
    params = [param for param in query.split("&") if param]
    if strip_tracking:
        params = [
            param
            for param in params
            if not (
                (name := _query_param_name(param).lower()).startswith("utm_")
                or name in TRACKING_PARAMS
            )
        ]
    if sort_query:
        params.sort(key=_query_param_name)
    return "&".join(params)


def _canonical_from_href(href: str, sort_query: bool, strip_tracking: bool) -> str | None:
    """Finish the canonical form from a WHATWG-serialized URL, or None if it is not http(s).

    Only what the module docstring's policy lists is changed; every other character stays as
    the parser serialized it. A serialized URL can be cut with plain string operations: the
    parser has percent-encoded every ``?`` and ``#`` inside userinfo and path, and every ``#``
    inside the query, and the path of an http(s) URL always starts with the ``/`` that ends the
    authority. Escapes are decoded before the query is filtered, so parameter names are compared
    decoded and a second pass changes nothing.
    """
    if href.startswith("https://"):
        authority_start = 8
    elif href.startswith("http://"):
        authority_start = 7
    else:
        return None
    hash_at = href.find("#")
    if hash_at >= 0:
        href = href[:hash_at]
    path_start = href.index("/", authority_start)
    authority = href[authority_start:path_start]
    if "@" in authority:  # credentials: never stored, never requested
        authority = authority.rpartition("@")[2]
    rest = href[path_start:]
    if "%" in rest:
        rest = _UNRESERVED_ESCAPE.sub(_decode_escape, rest)
    if "?" in rest:
        path, _, query = rest.partition("?")
        if sort_query or strip_tracking:
            query = _filter_query(query, sort_query, strip_tracking)
        rest = f"{path}?{query}" if query else path
    return f"{href[:authority_start]}{authority}{rest}"


def canonicalize(url: str, *, sort_query: bool = False, strip_tracking: bool = False) -> str:
    """The one canonical form of an absolute http(s) URL (see the module docstring).

    Raises ValueError, and nothing else, for any string that is not an absolute http(s) URL
    (relative, another scheme, empty, a host that fails IDNA, ...). The message masks
    credentials, since it ends up in logs.
    """
    try:
        href = ada_url.normalize_url(url)
    except ValueError:  # invalid, or lone surrogates (UnicodeEncodeError is a ValueError)
        try:
            href = ada_url.normalize_url(_usv(url))
        except ValueError:
            raise _not_http(url) from None
    canonical = _canonical_from_href(href, sort_query, strip_tracking)
    if canonical is None:
        raise _not_http(url)
    return canonical


def resolve(base: str, href: str) -> str | None:
    """Resolve an ``<a href>`` value against ``base`` as a browser does; None if that fails.

    The result is the WHATWG serialization, fragment included, of any scheme: this is the
    standard's answer, not yet the crawler's. HTML strips ASCII whitespace around an attribute
    value; the URL parser then drops tabs and newlines inside it.
    """
    href = href.strip(_HTML_WHITESPACE)
    try:
        return ada_url.join_url(base, href)
    except ValueError:
        pass
    try:
        return ada_url.join_url(_usv(base), _usv(href))
    except ValueError:
        return None


def resolve_link(
    base: str, href: str, *, sort_query: bool = False, strip_tracking: bool = False
) -> str | None:
    """The canonical URL a link points to, or None if it is not an http(s) URL; never raises.

    Called by the parser for every link on every page, so it parses once: the resolved
    serialization is canonicalized with string operations, without a second parse.
    """
    resolved = resolve(base, href)
    if resolved is None:
        return None
    return _canonical_from_href(resolved, sort_query, strip_tracking)


_PLAIN_ORIGIN: Final = re.compile(r"(https?)://([a-z0-9.-]+)(?::([0-9]{1,5}))?/")
"""The origin of a URL already in canonical form (every link the parser hands over is): read
by one regex instead of a second WHATWG parse, which this is called too often to afford."""


def _host_and_port(url: str) -> tuple[str, str, str]:
    """(scheme, host, port) of an http(s) URL, the port always explicit; ValueError otherwise."""
    plain = _PLAIN_ORIGIN.match(url)
    if plain is not None:
        scheme, host, port = plain.groups()
        if not port or port == _DEFAULT_PORTS[scheme]:
            return scheme, host, _DEFAULT_PORTS[scheme]
        if port[0] != "0":  # "080" is 80 to a parser: leave odd spellings to it
            return scheme, host, port
    try:
        href = ada_url.normalize_url(url)
    except ValueError:
        raise _not_http(url) from None
    if href.startswith("https://"):
        scheme, start = "https", 8
    elif href.startswith("http://"):
        scheme, start = "http", 7
    else:
        raise _not_http(url)
    hostport = href[start : href.index("/", start)].rpartition("@")[2]
    if hostport.startswith("["):  # IPv6: the port, if any, follows the bracket
        host, _, port = hostport.partition("]")
        host += "]"
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def host_key(url: str) -> str:
    """``scheme://host:port`` with the port always written, the key of politeness and ``hosts``.

    Writing the port always makes ``http://h`` and ``http://h:80`` one key and
    ``https://h`` (443) another, whatever spelling the URL arrived in. ValueError if ``url`` is
    not an absolute http(s) URL.
    """
    scheme, host, port = _host_and_port(url)
    return f"{scheme}://{host}:{port}"


# A special scheme reads userinfo even without slashes (``http:u:p@h``); others need ``//``, so
# ``mailto:someone@example.com`` keeps its address.
_CREDENTIALS_AT_START: Final = re.compile(r"^(\s*(?i:https?|wss?|ftp):[/\\]*)([^/?#\\]*)@")
_CREDENTIALS_AFTER_SLASHES: Final = re.compile(r"([/\\]{2})([^/?#\\]*)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    return match[1] + ("***:***@" if ":" in match[2] else "***@")


def has_userinfo(url: str) -> bool:
    """Whether ``url``, as the WHATWG parser reads it, holds a user name or a password.

    The canonical form drops credentials, so a caller that must refuse them rather than drop
    them (a seed file: the user meant to log in, and would be crawled anonymously without a
    word) asks this about the text before canonicalizing it. False for what does not parse.
    """
    if "@" not in url:
        return False
    try:
        parsed = ada_url.URL(_usv(url))
    except ValueError:
        return False
    return bool(parsed.username or parsed.password)


_AUTHORITY_USERINFO: Final = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)[^/?#\\]*@")
"""The ``user:password@`` of a URL's authority (up to its last ``@``), to drop before a request."""


def drop_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` of its authority, the rest as written.

    Applied to every URL right before it is requested and to every redirect target, whatever
    the caller passed: requests would turn URL userinfo into an ``Authorization: Basic``
    header, and a server's ``Location`` must never make us send (or store) credentials.
    Unlike :func:`without_userinfo` it does not re-serialize the URL (the fetcher requests
    URLs verbatim).
    """
    return _AUTHORITY_USERINFO.sub(r"\1", url) if "@" in url else url


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: credentials a page publishes in a link, or a server
    in a ``Location``, must not end up stored in clear (seeds with credentials are refused)."""
    if "@" not in url:
        return url
    try:
        parsed = ada_url.URL(url)
    except ValueError:
        return mask_credentials(url)
    if not parsed.username and not parsed.password:
        return url
    parsed.username = ""
    parsed.password = ""
    return str(parsed.href)


def mask_credentials(url: str) -> str:
    """``http://user:secret@h/`` → ``http://***:***@h/``, for logs; never raises.

    Both halves are masked: an access token is as often put in the username slot
    (``https://TOKEN@host/``) as in the password. This works on the text, without parsing, so it
    also masks what no parser accepts, and URLs embedded in a query (``?next=http://u:p@h/``).
    Userinfo ends at the last ``@`` before the first ``/ ? # \\``, as in the URL Standard.
    """
    masked = _CREDENTIALS_AT_START.sub(_mask_userinfo, url, count=1)
    return _CREDENTIALS_AFTER_SLASHES.sub(_mask_userinfo, masked)


def _normalize_domain(domain: str) -> str:
    """A domain as it appears in a canonical URL's host: lowercase, IDNA, no outer dots."""
    cleaned = domain.strip().strip(".")
    if not cleaned or any(c in cleaned for c in "/?#@:[]\\"):
        raise ValueError(f"invalid allowed domain {domain!r}")
    try:
        return _host_and_port(f"http://{cleaned}/")[1]
    except ValueError:
        raise ValueError(f"invalid allowed domain {domain!r}") from None


def _compile_all(kind: str, patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"invalid {kind} pattern {pattern!r}: {exc}") from None
    return tuple(compiled)


@dataclass(frozen=True, slots=True)
class Scope:
    """What a crawl may fetch; built once from ``[scope]`` and the seeds, asked for every link.

    A URL is in scope when it is http(s); its host name is the host name of one of
    ``seed_hosts`` (any scheme and port: a site that redirects from http to https, or links
    its own https pages, stays in scope), or its host is one of ``allowed_domains`` or a
    subdomain of one (``example.com`` allows ``www.example.com``, not ``badexample.com``), or
    ``follow_external`` is set; it matches one ``include`` pattern when there are any
    (``re.search`` on the canonical URL); and it matches no ``exclude`` pattern. Patterns are
    compiled and domains normalized here, once: an invalid one is a ValueError naming it.
    """

    seed_hosts: frozenset[str] = frozenset()
    allowed_domains: tuple[str, ...] = ()
    follow_external: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _seed_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    _domains: frozenset[str] = field(init=False, repr=False, compare=False)
    _include: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _exclude: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seed_keys = set()
        for key in self.seed_hosts:
            try:
                seed_keys.add(_host_and_port(host_key(key))[1])
            except ValueError:
                raise ValueError(f"invalid seed host {key!r}") from None
        object.__setattr__(self, "_seed_keys", frozenset(seed_keys))
        domains = frozenset(_normalize_domain(d) for d in self.allowed_domains)
        object.__setattr__(self, "_domains", domains)
        object.__setattr__(self, "_include", _compile_all("include", self.include))
        object.__setattr__(self, "_exclude", _compile_all("exclude", self.exclude))

    def _host_allowed(self, scheme: str, host: str, port: str) -> bool:
        if self.follow_external or host in self._seed_keys:
            return True
        domains = self._domains
        if not domains:
            return False
        while True:  # the host, then each parent domain: a.b.example.com, b.example.com, ...
            if host in domains:
                return True
            dot = host.find(".")
            if dot < 0:
                return False
            host = host[dot + 1 :]

    def is_seed_host(self, hostname: str) -> bool:
        """Whether ``hostname`` (as in a canonical URL) is the host of a seed."""
        return hostname in self._seed_keys

    def allows(self, url: str) -> bool:
        """Whether the crawl may fetch ``url`` (a canonical URL); False for anything not http(s)."""
        try:
            scheme, host, port = _host_and_port(url)
        except ValueError:
            return False
        if not self._host_allowed(scheme, host, port):
            return False
        if self._include and not any(p.search(url) for p in self._include):
            return False
        return not any(p.search(url) for p in self._exclude)
