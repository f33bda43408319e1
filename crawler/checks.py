"""Reading and checking setting values, for :mod:`crawler.config`: a value read from TOML or
the environment as its field's type (:func:`coerce`, :func:`parse_env`, a ``ConfigError``
when it is not one), and the checks that type and range cannot make: the user agent (and the
robots.txt product token read from it), regular expressions, allowed domains, each returning
what is wrong with a value (a sentence for the error message) or None. Pure functions.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from typing import Any, Final
from urllib.parse import urlsplit

from crawler.errors import ConfigError
from crawler.urls import Scope, canonicalize

# RFC 9110 §5.6.2 tchar: what a product name or version may hold.
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9110 §10.1.5: the first product of a User-Agent (``token ["/" product-version]``), then
# the end or whitespace (RWS) before the next product or comment.
_FIRST_PRODUCT: Final = re.compile(
    r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?(?=[ \t]|\Z)"
)


def robots_product_token(user_agent: str) -> str | None:
    """The name robots.txt groups are matched on for ``user_agent``, or None if it has none.

    RFC 9309 §2.2.1 matches groups on the crawler's product token; in a User-Agent (RFC 9110
    §10.1.5: ``product *( RWS ( product / comment ) )``, ``product = token ["/"
    product-version]``) that is the name of the first product, lowercased:
    ``mybot/1.0 (+https://example.com/bot)`` and ``mybot (+https://example.com/bot)`` give
    ``mybot``. None when the value does not begin with a product (``/1.0``, `` mybot``, ``""``).
    The one definition: :func:`user_agent_problem` accepts what this reads, and
    :mod:`crawler.fetch.robots` matches on what it returns.
    """
    match = _FIRST_PRODUCT.match(user_agent)
    return match[1].lower() if match is not None else None


def user_agent_problem(user_agent: str) -> str | None:
    """What makes ``user_agent`` unusable, or None.

    It is sent as the ``User-Agent`` header, so it must be visible ASCII and spaces (http.client
    cannot send anything else), and it must begin with a product (RFC 9110 §10.1.5), whose name
    is our robots.txt token (:func:`robots_product_token`). What follows the first product is
    not parsed further: every valid RFC 9110 value is accepted, and a malformed comment after a
    good product harms no one.
    """
    if any(not (" " <= c <= "~" or c == "\t") for c in user_agent):
        return f"must be visible ASCII and spaces (it is an HTTP header), got {user_agent!r}"
    if robots_product_token(user_agent) is not None:
        return None
    hint = "a product token such as 'mybot/1.0 (+https://example.com/bot)'"
    name = _TOKEN.match(user_agent)
    if name is None:
        what = "no product name" if user_agent.strip() else "nothing"
        if user_agent[:1] in (" ", "\t") and user_agent.strip():
            what = "whitespace before its product name"
        return f"must begin with {hint}: {user_agent!r} has {what} at the start"
    rest = user_agent[name.end() :]
    if rest[:1] == "/":
        version = _TOKEN.match(rest, 1)
        if version is None:
            return f"must begin with {hint}: {user_agent!r} has no version token after '{name[0]}/'"
        rest = rest[version.end() :]
    return (
        f"must begin with {hint}: in {user_agent!r} the product {name[0]!r} is followed by "
        f"{rest[:1]!r}, not a space"
    )


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a regular expression ``re`` compiles (as ``Scope`` does), or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"{pattern!r} is not a regular expression ({exc}); patterns are searched in the URL"
    return None


_NOT_IN_A_DOMAIN: Final = (
    ("[]\\", "holds '[', ']' or '\\'; write a domain name or an IPv4 address"),
    ("/?#", "holds a path; write the host name alone, such as 'example.com'"),
    (":", "holds a port or ':'; a domain matches on every port, write the name alone"),
    ("@", "holds user info; write the host name alone"),
    ("*", "holds '*'; subdomains are always included, so write 'example.com' for '*.example.com'"),
    ("%", "holds '%'; write the name as text, not percent-encoded"),
)


def domain_problem(entry: str) -> str | None:
    """What makes ``entry`` unusable as an ``allowed_domains`` item, or None.

    An item is a host name as written in a URL, matched with its subdomains on any scheme and
    port: not empty; no scheme, path, port, user info, ``*`` wildcard or percent escape; no
    whitespace or control character; labels of 1 to 63 characters and at most 253 in all once
    in ASCII (IDNA, as browsers apply it: ``münchen.de`` is ``xn--mnchen-3ya.de``); an ``xn--``
    label must be valid Punycode of a name that encodes back to it. Outer dots are ignored
    (``.example.com`` is ``example.com``).
    """
    name = entry.strip().strip(".")
    shown = repr(entry)
    if not name:
        return f"{shown} is empty"
    if "://" in name:
        host = urlsplit(name).hostname
        return f"{shown} is a URL, not a domain name" + (f"; write {host!r}" if host else "")
    if any(c.isspace() or not c.isprintable() for c in name):
        return f"{shown} holds a space or an invisible (control or format) character"
    for chars, why in _NOT_IN_A_DOMAIN:
        if any(c in name for c in chars):
            return f"{shown} {why}"
    try:
        Scope(allowed_domains=(name,))
        host = urlsplit(canonicalize(f"http://{name}/")).hostname or ""
    except ValueError:
        return f"{shown} is not a valid domain name"
    labels = host.split(".")
    if "" in labels:
        return f"{shown} has an empty label (two dots in a row)"
    if len(host) > 253 or any(len(label) > 63 for label in labels):
        return f"{shown} is too long for DNS (labels up to 63 characters, 253 in all)"
    if not all(_punycode_ok(label) for label in labels if label.startswith("xn--")):
        return f"{shown} is not valid IDNA (an 'xn--' label that is not Punycode of a name)"
    return None


def _punycode_ok(label: str) -> bool:
    """Whether an ``xn--`` label decodes to a name that the URL parser encodes back to it."""
    try:
        name = label[4:].encode("ascii").decode("punycode")
        return bool(name) and urlsplit(canonicalize(f"http://{name}/")).hostname == label
    except (UnicodeError, ValueError):
        return False


def field_types(section_cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def type_name(tp: Any) -> str:
    if tp == tuple[str, ...]:
        return "a list of strings"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check a value read from TOML against the field's type (ints are accepted for floats)."""
    ok: bool
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif tp == tuple[str, ...]:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a new field type without a rule here
        raise TypeError(f"no rule for settings type {tp}")
    if not ok:
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r}")
    return value


def parse_env(text: str, tp: Any, where: str) -> Any:
    """Environment values are strings: parse them by the field's type."""
    raw = text.strip()
    try:
        if tp is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp == tuple[str, ...]:
            if raw.startswith("["):
                parsed = tomllib.loads(f"v = {raw}")["v"]
                return coerce(parsed, tp, where)
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return text
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {text!r}") from None
