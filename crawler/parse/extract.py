"""Extraction rules and the code hook: the data people crawl for, into ``fetches.data``.

Built once from ``[extract]`` (selectors compiled, patterns compiled, the hook imported, so a
typo is a settings error at start, not a thousand parse errors later), then applied by the
worker to the BeautifulSoup document the parser already built: no page is parsed twice. A rule
or hook that fails on a page is reported as a message, which becomes a ``parse`` error row;
the page and the crawl go on.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import soupsieve
from bs4 import BeautifulSoup, Tag

from crawler.config import ExtractSettings
from crawler.errors import ConfigError, describe
from crawler.records import FetchResult

Hook = Callable[[str, BeautifulSoup, FetchResult], Any]


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    selector: Any  # soupsieve.SoupSieve
    attribute: str | None
    many: bool
    url_pattern: re.Pattern[str] | None

    def value(self, soup: BeautifulSoup) -> Any:
        if self.many:
            return [self._one(tag) for tag in self.selector.select(soup)]
        tag = self.selector.select_one(soup)
        return None if tag is None else self._one(tag)

    def _one(self, tag: Tag) -> str | None:
        if self.attribute is None:
            return " ".join(tag.get_text(" ").split())
        value = tag.get(self.attribute)
        if isinstance(value, list):  # class, rel: multi-valued attributes
            return " ".join(value)
        return None if value is None else str(value)


def needs_tree(extractor: Extractor | None) -> bool:
    """Whether pages must be parsed into a BeautifulSoup document on the crawl's process: only
    extraction rules and the hook read one. Without that, no BeautifulSoup tree is built and pages
    may go to parser processes. The one place this is decided."""
    return extractor is not None and bool(extractor)


class Extractor:
    """Applies every rule whose ``url_pattern`` matches, then the hook."""

    def __init__(self, settings: ExtractSettings) -> None:
        rules = []
        for rule in settings.rules:
            where = f"[extract.{rule.name}]"
            try:
                selector = soupsieve.compile(rule.selector)
            except Exception as exc:  # soupsieve's message shows the selector over lines
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise ConfigError(f"{where} selector {rule.selector!r}: {first}") from None
            try:
                pattern = re.compile(rule.url_pattern) if rule.url_pattern else None
            except re.error as exc:
                raise ConfigError(f"{where} url_pattern {rule.url_pattern!r}: {exc}") from None
            rules.append(_Rule(rule.name, selector, rule.attribute, rule.many, pattern))
        self._rules = tuple(rules)
        self._hook = _import_hook(settings.hook) if settings.hook else None

    def __bool__(self) -> bool:
        return bool(self._rules) or self._hook is not None

    def apply(
        self, url: str, soup: BeautifulSoup, response: FetchResult
    ) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
        """The page's data (None when no rule applied), and a message per failed rule/hook.

        ``url_pattern`` is matched against the URL the document came from (the final URL,
        after redirects); the hook gets ``url`` (the URL requested) and the response."""
        data: dict[str, Any] = {}
        problems: list[str] = []
        page_url = response.final_url or url
        for rule in self._rules:
            if rule.url_pattern is not None and not rule.url_pattern.search(page_url):
                continue
            try:
                data[rule.name] = rule.value(soup)
            except Exception as exc:
                problems.append(f"extract rule '{rule.name}' failed: {describe(exc)}")
        if self._hook is not None:
            try:
                extra = self._hook(url, soup, response)
                if extra is not None and not isinstance(extra, dict):
                    raise TypeError(f"returned {type(extra).__name__}, not a dict")
                # Checked here, for this page: the writer would fail the whole batch on a value
                # json cannot write, and NaN is JSON SQLite's json functions cannot read.
                json.dumps(extra, allow_nan=False)
                data.update(extra or {})
            except Exception as exc:
                problems.append(f"extract hook failed: {describe(exc)}")
        return (data or None), tuple(problems)


def _import_hook(spec: str) -> Hook:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        hook = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[extract] hook {spec!r} cannot be imported: {exc}") from None
    if not callable(hook):
        raise ConfigError(f"[extract] hook {spec!r} is not callable")
    return hook  # type: ignore[no-any-return]
