"""Settings: settings.toml equals the code's defaults, precedence, and errors that say where."""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from crawler import config as config_module
from crawler.config import Config, load_config
from crawler.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_TOML = ROOT / "settings.toml"


def _normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_normalized(v) for v in value]
    return value


def _write(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- settings.toml


def _plain_sections() -> dict[str, Any]:
    """Every section but [extract], whose rules are tables the file shows as a commented
    example (tests/parse/test_extract.py covers it)."""
    sections = dataclasses.asdict(Config())
    del sections["extract"]
    return sections


def test_settings_toml_documents_the_extract_section() -> None:
    text = SETTINGS_TOML.read_text(encoding="utf-8")
    for word in ("[extract.heading]", "selector", "attribute", "many", "url_pattern", "hook"):
        assert word in text


def test_settings_toml_equals_defaults_in_code() -> None:
    with SETTINGS_TOML.open("rb") as f:
        documented = tomllib.load(f)
    defaults = _normalized(_plain_sections())
    assert list(documented) == list(defaults), "sections differ (or are in another order)"
    for section, values in defaults.items():
        assert set(documented[section]) == set(values), f"keys of [{section}] differ"
        for key, value in values.items():
            got = documented[section][key]
            assert got == value, f"[{section}] {key}: settings.toml has {got!r}, code has {value!r}"
            assert type(got) is type(value), f"[{section}] {key}: {type(got)} vs {type(value)}"


def test_settings_toml_loads_as_a_config_file() -> None:
    assert load_config(SETTINGS_TOML, env={}) == Config()


def test_every_setting_has_a_comment_line_directly_above_it() -> None:
    lines = SETTINGS_TOML.read_text(encoding="utf-8").splitlines()
    undocumented = []
    seen = set()
    section = ""
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("[") and text.endswith("]"):
            section = text[1:-1]
        elif text and not text.startswith("#"):
            key = text.split("=", 1)[0].strip()
            seen.add((section, key))
            above = lines[i - 1].strip() if i else ""
            if not (above.startswith("#") and len(above.lstrip("# ")) > 0):
                undocumented.append(f"[{section}] {key}")
    assert undocumented == []
    expected = {(s, k) for s, values in _plain_sections().items() for k in values}
    assert seen == expected


# --------------------------------------------------------------------------- precedence


def test_defaults_without_file_or_env() -> None:
    assert load_config(None, env={}) == Config()


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[crawl]\nworkers = 3\nmax_pages = 10\nmax_depth = 4\n[politeness]\ndelay = 2\n",
    )
    env = {"CRAWLER_CRAWL_WORKERS": "5", "CRAWLER_CRAWL_MAX_PAGES": "20", "HOME": "/x"}
    overrides = {"crawl": {"workers": 7, "max_depth": None}}
    config = load_config(path, env=env, overrides=overrides)
    assert config.crawl.workers == 7  # flag > env > file
    assert config.crawl.max_pages == 20  # env > file
    assert config.crawl.max_depth == 4  # file > default; a None flag means "not given"
    assert config.politeness.delay == 2.0  # an int in the file is accepted for a float
    assert isinstance(config.politeness.delay, float)
    assert config.crawl.user_agent == Config().crawl.user_agent  # untouched default
    assert config.fetch == Config().fetch


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_CRAWL_WORKERS", "9")
    assert load_config(None).crawl.workers == 9
    assert load_config(None, env={}).crawl.workers == 16


def test_config_is_frozen() -> None:
    config = load_config(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.crawl.workers = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "text", "section", "key", "expected"),
    [
        ("CRAWLER_POLITENESS_OBEY_ROBOTS", "false", "politeness", "obey_robots", False),
        ("CRAWLER_POLITENESS_OBEY_ROBOTS", "0", "politeness", "obey_robots", False),
        ("CRAWLER_POLITENESS_OBEY_ROBOTS", "No", "politeness", "obey_robots", False),
        ("CRAWLER_POLITENESS_OBEY_ROBOTS", "off", "politeness", "obey_robots", False),
        ("CRAWLER_SCOPE_FOLLOW_EXTERNAL", "TRUE", "scope", "follow_external", True),
        ("CRAWLER_SCOPE_FOLLOW_EXTERNAL", "1", "scope", "follow_external", True),
        ("CRAWLER_SCOPE_FOLLOW_EXTERNAL", " yes ", "scope", "follow_external", True),
        ("CRAWLER_SCOPE_FOLLOW_EXTERNAL", "on", "scope", "follow_external", True),
        ("CRAWLER_CRAWL_WORKERS", " 8 ", "crawl", "workers", 8),
        ("CRAWLER_CRAWL_MAX_PAGES", "0", "crawl", "max_pages", 0),
        ("CRAWLER_POLITENESS_DELAY", "0.25", "politeness", "delay", 0.25),
        ("CRAWLER_POLITENESS_DELAY", "3", "politeness", "delay", 3.0),
        ("CRAWLER_FETCH_TOTAL_TIMEOUT", "1e1", "fetch", "total_timeout", 10.0),
        (
            "CRAWLER_CRAWL_USER_AGENT",
            "bot/1 (+https://x.test)",
            "crawl",
            "user_agent",
            "bot/1 (+https://x.test)",
        ),
        (
            "CRAWLER_STORE_DB",
            "postgresql+psycopg://u@h/db",
            "store",
            "db",
            "postgresql+psycopg://u@h/db",
        ),
        (
            "CRAWLER_SCOPE_ALLOWED_DOMAINS",
            "a.test, b.test,,",
            "scope",
            "allowed_domains",
            ("a.test", "b.test"),
        ),
        ("CRAWLER_SCOPE_EXCLUDE", '["\\\\.pdf$", "a,b"]', "scope", "exclude", (r"\.pdf$", "a,b")),
        ("CRAWLER_SCOPE_INCLUDE", "", "scope", "include", ()),
        ("CRAWLER_SCHEDULE_POLICY", "adaptive", "schedule", "policy", "adaptive"),
    ],
)
def test_env_values_are_parsed_by_type(
    var: str, text: str, section: str, key: str, expected: Any
) -> None:
    config = load_config(None, env={var: text})
    value = getattr(getattr(config, section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_env_ignores_other_variables() -> None:
    env = {"PATH": "/bin", "CRAWLER": "x", "crawler_crawl_workers": "abc", "XCRAWLER_CRAWL_W": "1"}
    assert load_config(None, env=env) == Config()


def test_file_values_of_every_type(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[scope]\nallowed_domains = ["a.test"]\nfollow_external = true\n'
        '[crawl]\nuser_agent = "bot"\nmax_time_s = 5\n',
    )
    config = load_config(path, env={})
    assert config.scope.allowed_domains == ("a.test",)
    assert config.scope.follow_external is True
    assert config.crawl.user_agent == "bot"
    assert config.crawl.max_time_s == 5.0


# --------------------------------------------------------------------------- file errors


def _error(path: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {}, overrides=overrides or None)
    message = str(info.value)
    assert "\n" not in message, "one line"
    return message


def test_unknown_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawling]\nworkers = 2\n")
    message = _error(path)
    assert "crawling" in message
    assert str(path) in message


def test_unknown_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawl]\nworkerz = 2\n")
    message = _error(path)
    assert "workerz" in message
    assert "[crawl]" in message
    assert str(path) in message


def test_top_level_key_is_an_unknown_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "workers = 2\n")
    message = _error(path)
    assert "workers" in message
    assert str(path) in message


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = _write(tmp_path, "crawl = 2\n")
    message = _error(path)
    assert "crawl" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("toml", "key", "shown"),
    [
        ('[crawl]\nworkers = "8"\n', "workers", "'8'"),
        ("[crawl]\nworkers = true\n", "workers", "True"),
        ("[crawl]\nworkers = 2.5\n", "workers", "2.5"),
        ("[crawl]\nworkers = 8.0\n", "workers", "8.0"),
        ('[politeness]\ndelay = "1"\n', "delay", "'1'"),
        ("[politeness]\ndelay = false\n", "delay", "False"),
        ('[politeness]\nobey_robots = "false"\n', "obey_robots", "'false'"),
        ("[politeness]\nobey_robots = 0\n", "obey_robots", "0"),
        ("[crawl]\nuser_agent = 5\n", "user_agent", "5"),
        ('[scope]\nallowed_domains = ["a.test", 1]\n', "allowed_domains", "1"),
        ('[scope]\nallowed_domains = "a.test"\n', "allowed_domains", "'a.test'"),
        ('[scope]\nexclude = [["x"]]\n', "exclude", "x"),
    ],
)
def test_wrong_type_in_file(tmp_path: Path, toml: str, key: str, shown: str) -> None:
    path = _write(tmp_path, toml)
    message = _error(path)
    assert key in message
    assert str(path) in message
    assert "expected" in message
    assert shown in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[crawl]\nworkers = -1\n", "workers"),
        ("[crawl]\nworkers = 0\n", "workers"),
        ("[crawl]\nmax_pages = -5\n", "max_pages"),
        ("[politeness]\ndelay = -0.1\n", "delay"),
        ("[politeness]\ndelay = nan\n", "delay"),
        ("[politeness]\nper_host_concurrency = 0\n", "per_host_concurrency"),
        ('[schedule]\npolicy = "sometimes"\n', "policy"),
        ("[fetch]\ntotal_timeout = 0\n", "total_timeout"),
        ("[fetch]\nretries = -1\n", "retries"),
        ('[crawl]\nuser_agent = "  "\n', "user_agent"),
        ('[store]\ndb = ""\n', "db"),
    ],
)
def test_out_of_range_in_file_names_key_and_file(tmp_path: Path, toml: str, key: str) -> None:
    path = _write(tmp_path, toml)
    message = _error(path)
    assert key in message
    assert str(path) in message
    assert "must be" in message


def test_policy_error_lists_the_choices(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, '[schedule]\npolicy = "Fixed"\n'))
    assert '"fixed" or "adaptive"' in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = _error(path)
    assert str(path) in message
    assert "not found" in message


def test_directory_as_file(tmp_path: Path) -> None:
    message = _error(tmp_path)
    assert str(tmp_path) in message
    assert "directory" in message


def test_path_through_a_file_is_unreadable(tmp_path: Path) -> None:
    path = _write(tmp_path, "") / "settings.toml"  # its "directory" is a file
    message = _error(path)
    assert str(path) in message
    assert "cannot read" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawl]\n")
    path.chmod(0)
    try:
        message = _error(path)
    finally:
        path.chmod(0o600)
    assert str(path) in message
    assert "cannot read" in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawl]\nworkers = = 3\n")
    message = _error(path)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 2" in message


def test_duplicate_key_is_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawl]\nworkers = 3\nworkers = 4\n")
    assert "not valid TOML" in _error(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b'[crawl]\nuser_agent = "caf\xe9"\n')
    message = _error(path)
    assert str(path) in message
    assert "UTF-8" in message


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, ""), env={}) == Config()


# --------------------------------------------------------------------------- env errors


@pytest.mark.parametrize("var", ["CRAWLER_CRAWL", "CRAWLER_CRAWL_", "CRAWLER_SCOPE"])
def test_env_section_without_a_key(var: str) -> None:
    message = _error(env={var: "1"})
    assert var in message
    assert "CRAWLER_<SECTION>_<KEY>" in message


@pytest.mark.parametrize(
    "var",
    [
        "CRAWLER_CMD",  # set by other tools: not a setting at all
        "CRAWLER_HOME",
        "CRAWLER_",
        "CRAWLER_WORKERS",
        "CRAWLER_CRAWLING_WORKERS",  # "crawling" is not a section ("crawl_" would be)
        "CRAWLER_SCOPES_INCLUDE",
        "CRAWLER_HOSTS",
    ],
)
def test_env_variables_that_are_not_settings_are_ignored_with_a_warning(
    var: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crawler.config"):
        assert load_config(None, env={var: "1", "CRAWLER_CRAWL_WORKERS": "3"}).crawl.workers == 3
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith(f"ignoring environment variable {var}: not a setting")


def test_ignored_variables_can_go_to_a_callback() -> None:
    ignored: list[str] = []
    load_config(None, env={"CRAWLER_CMD": "x", "CRAWLER_HOME": "/h"}, on_ignored=ignored.append)
    assert sorted(ignored) == ["CRAWLER_CMD", "CRAWLER_HOME"]


def test_env_for_a_section_no_variable_can_set() -> None:
    """[extract.<name>] rules are tables: a variable for them is an error, not ignored."""
    message = _error(env={"CRAWLER_EXTRACT_TITLE_SELECTOR": "title"})
    assert "CRAWLER_EXTRACT_TITLE_SELECTOR" in message
    assert "[extract]" in message
    assert "settings file" in message


def test_env_section_names_are_matched_longest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A section whose name holds "_" (none yet; the split must not assume so) wins over a
    shorter section its name starts with, and its keys are found."""

    @dataclasses.dataclass(frozen=True)
    class FetchTls:
        verify: bool = True

    monkeypatch.setitem(config_module._SECTION_TYPES, "fetch_tls", FetchTls)
    values = {name: {} for name in config_module._SECTION_TYPES}
    config_module._merge_env(values, {"CRAWLER_FETCH_TLS_VERIFY": "false"})
    assert values["fetch_tls"] == {"verify": False}
    assert values["fetch"] == {}


def test_env_unknown_key() -> None:
    message = _error(env={"CRAWLER_CRAWL_WORKERZ": "1"})
    assert "CRAWLER_CRAWL_WORKERZ" in message
    assert "workerz" in message


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("CRAWLER_CRAWL_WORKERS", "abc"),
        ("CRAWLER_CRAWL_WORKERS", "2.5"),
        ("CRAWLER_CRAWL_WORKERS", "true"),
        ("CRAWLER_CRAWL_WORKERS", ""),
        ("CRAWLER_POLITENESS_DELAY", "fast"),
        ("CRAWLER_POLITENESS_OBEY_ROBOTS", "maybe"),
        ("CRAWLER_POLITENESS_OBEY_ROBOTS", ""),
        ("CRAWLER_SCOPE_EXCLUDE", "[1, 2]"),
        ("CRAWLER_SCOPE_EXCLUDE", '["unclosed"'),
    ],
)
def test_env_unparsable_value(var: str, text: str) -> None:
    message = _error(env={var: text})
    assert var in message
    assert text in message
    assert "expected" in message


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("CRAWLER_CRAWL_WORKERS", "-1"),
        ("CRAWLER_POLITENESS_DELAY", "-1"),
        ("CRAWLER_SCHEDULE_POLICY", "never"),
    ],
)
def test_env_out_of_range_names_the_variable(var: str, text: str) -> None:
    message = _error(env={var: text})
    assert var in message
    assert "must be" in message


def test_flag_out_of_range_names_the_key() -> None:
    message = _error(crawl={"workers": -1})
    assert "workers" in message
    assert "must be" in message
    assert "-1" in message


# ------------------------------------------------------------------ values that cannot work


@pytest.mark.parametrize(
    "user_agent",
    [
        "crawler/0.1",
        "crawler",
        "my_bot-2/1.0 (+https://example.com/bot; bot@example.com)",
        "Mozilla/5.0 (compatible; mybot/2.1; +https://example.com/bot)",
        "bot/1.0\t(tab)",
        "mybot (+https://x/bot)",  # RFC 9110: product = token ["/" product-version]
        "mybot/1.0 (+https://x/bot)",
        "my crawler/1.0",  # two products; robots.txt matches the first, "my"
        "a.b/1.0",  # "." is a tchar
        "mybot/1.0 (nested (comment)) other/2",
    ],
)
def test_user_agents_with_a_product_token_are_accepted(user_agent: str) -> None:
    assert load_config(env={}, overrides={"crawl": {"user_agent": user_agent}}).crawl.user_agent


@pytest.mark.parametrize(
    ("user_agent", "why"),
    [
        ("/1.0", "no product name"),
        (" crawler/1.0", "whitespace before"),  # requests refuses a header with leading space
        ("\tcrawler", "whitespace before"),
        ("(comment) crawler/1.0", "no product name"),
        ("crawler(x)", "followed by '('"),
        ("crawler/1.0(x)", "followed by '('"),
        ("crawler/", "no version"),
        ("crawler/ 1.0", "no version"),
        ("crawler/1.0\n", "visible ASCII"),
        ("crawler/1.0 ☃", "visible ASCII"),  # http.client cannot encode it
        ("", "product token"),
    ],
)
def test_user_agents_without_a_product_token_are_refused(user_agent: str, why: str) -> None:
    message = _error(crawl={"user_agent": user_agent})
    assert "[crawl] user_agent" in message
    assert why in message


def test_flag_names_its_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            env={},
            overrides={"crawl": {"user_agent": "/1.0"}},
            flag_names={("crawl", "user_agent"): "--user-agent"},
        )
    assert str(info.value).startswith("command line: --user-agent [crawl] user_agent: ")


@pytest.mark.parametrize(
    "domain",
    [
        "example.com",
        ".example.com",
        "EXAMPLE.com.",
        "münchen.de",
        "xn--mnchen-3ya.de",
        "💩.la",
        "ex_ample.com",
        "127.0.0.1",
        "localhost",
    ],
)
def test_allowed_domains_that_work(tmp_path: Path, domain: str) -> None:
    path = _write(tmp_path, f'[scope]\nallowed_domains = ["{domain}"]\n')
    assert load_config(path, env={}).scope.allowed_domains == (domain,)


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("", "empty"),
        ("...", "empty"),
        ("https://example.com/", "write 'example.com'"),
        ("example.com/path", "path"),
        ("example.com?q", "path"),
        ("example.com:8080", "port"),
        ("[::1]", "IPv4"),
        ("user@example.com", "user info"),
        ("exa mple.com", "space"),
        ("exa\\u0007mple.com", "invisible"),
        ("*.example.com", "subdomains are always included"),
        ("exa%41mple.com", "percent"),
        ("a..example.com", "empty label"),
        ("xn--a.com", "IDNA"),
        ("xn--zz.com", "IDNA"),
        ("a\\u200db.com", "invisible"),  # a zero-width joiner
        ("ex|ample.com", "not a valid domain name"),  # a forbidden host code point (WHATWG)
        ("x" * 64 + ".com", "too long"),
    ],
)
def test_allowed_domains_that_cannot_work(tmp_path: Path, domain: str, why: str) -> None:
    path = _write(tmp_path, f'[scope]\nallowed_domains = ["ok.example", "{domain}"]\n')
    message = _error(path)
    assert f"{path}: [scope] allowed_domains: " in message
    assert why in message


@pytest.mark.parametrize("key", ["include", "exclude"])
@pytest.mark.parametrize("pattern", ["(unclosed", "*.pdf", "[a-", "a{2,1}"])
def test_invalid_patterns_are_refused(tmp_path: Path, key: str, pattern: str) -> None:
    path = _write(tmp_path, f"[scope]\n{key} = ['/ok/', '{pattern}']\n")
    message = _error(path)
    assert f"{path}: [scope] {key}: {pattern!r} is not a regular expression" in message


def test_invalid_url_pattern_of_an_extract_rule_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[extract.t]\nselector = "title"\nurl_pattern = "(x"\n')
    assert "[extract.t] url_pattern '(x': missing )" in _error(path)


def test_a_stored_value_that_cannot_work_is_refused_unless_replaced() -> None:
    """A resumed crawl's settings (an older version accepted ``/1.0``) are refused naming the
    crawl, and a flag can replace the value so the database stays usable."""
    base = {"crawl": {"user_agent": "/1.0"}}
    with pytest.raises(ConfigError, match=r"^the resumed crawl: \[crawl\] user_agent: "):
        load_config(env={}, base=base, base_source="the resumed crawl")
    fixed = load_config(env={}, base=base, overrides={"crawl": {"user_agent": "crawler/0.2"}})
    assert fixed.crawl.user_agent == "crawler/0.2"
