"""The recrawl schedule (``crawler.schedule.plan``) as a pure function, with explicit clocks.

No I/O and no sleeping: every test passes ``now`` and checks the plan's next fetch time as an
exact offset from it.
"""

from __future__ import annotations

import datetime as dt

import pytest

from crawler.config import ScheduleSettings
from crawler.records import FetchTask
from crawler.schedule import DEC_RATE, INC_RATE, History, Visit, history_of, plan

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
HOUR = 3600.0
DAY = 86400.0

FIXED = ScheduleSettings(policy="fixed", default_interval=DAY, min_interval=HOUR)
ADAPTIVE = ScheduleSettings(
    policy="adaptive", default_interval=DAY, min_interval=HOUR, max_interval=30 * DAY
)

CHANGED = Visit(ok=True, status=200, changed=True)
SAME = Visit(ok=True, status=200, changed=False)
NOT_MODIFIED = Visit(ok=True, status=304, changed=False)
UNKNOWN = Visit(ok=True, status=200, changed=None)
NOT_FOUND = Visit(ok=False, status=404)
GONE_410 = Visit(ok=False, status=410)
SERVER_ERROR = Visit(ok=False, status=503)
NO_RESPONSE = Visit(ok=False, status=None)


def _after(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def _task(**fields: object) -> FetchTask:
    return FetchTask(
        url_id=1, url="http://a.test/", host_id=1, host="http://a.test:80", depth=0, **fields
    )  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fixed


@pytest.mark.parametrize("visit", [CHANGED, SAME, NOT_MODIFIED, UNKNOWN], ids=str)
def test_fixed_policy_always_uses_the_default_interval(visit: Visit) -> None:
    p = plan(FIXED, History(interval=5 * HOUR), visit, NOW)
    assert p.interval == DAY
    assert p.next_fetch_at == _after(DAY)
    assert (p.failures, p.not_found, p.gone) == (0, 0, False)


def test_fixed_policy_first_fetch() -> None:
    p = plan(FIXED, History(), CHANGED, NOW)
    assert (p.interval, p.next_fetch_at) == (DAY, _after(DAY))


def test_fixed_policy_takes_the_changefreq_hint() -> None:
    history = history_of(_task(changefreq="hourly"))
    assert history.hint_interval == HOUR
    p = plan(FIXED, history, SAME, NOW)
    assert (p.interval, p.next_fetch_at) == (HOUR, _after(HOUR))


# --------------------------------------------------------------------------- adaptive


def test_nutch_rates() -> None:
    assert (INC_RATE, DEC_RATE) == (0.4, 0.2)


def test_adaptive_shrinks_on_change() -> None:
    p = plan(ADAPTIVE, History(interval=10 * HOUR), CHANGED, NOW)
    assert p.interval == pytest.approx(8 * HOUR)
    assert p.next_fetch_at == _after(p.interval)


@pytest.mark.parametrize("visit", [SAME, NOT_MODIFIED], ids=["same-hash", "304"])
def test_adaptive_grows_when_unchanged(visit: Visit) -> None:
    p = plan(ADAPTIVE, History(interval=10 * HOUR), visit, NOW)
    assert p.interval == pytest.approx(14 * HOUR)
    assert p.next_fetch_at == _after(p.interval)


def test_adaptive_keeps_the_interval_when_change_is_unknown() -> None:
    p = plan(ADAPTIVE, History(interval=10 * HOUR), UNKNOWN, NOW)
    assert (p.interval, p.next_fetch_at) == (10 * HOUR, _after(10 * HOUR))


def test_adaptive_first_interval_is_the_default() -> None:
    """A first fetch has nothing to compare with: the documented first interval is
    ``default_interval`` (Nutch treats a first fetch as STATUS_UNKNOWN too)."""
    first = history_of(_task())  # no content_hash stored yet
    p = plan(ADAPTIVE, first, CHANGED, NOW)
    assert (p.interval, p.next_fetch_at) == (DAY, _after(DAY))
    # The second fetch compares: it moves.
    seen = history_of(_task(content_hash="ab" * 32, interval=DAY))
    assert plan(ADAPTIVE, seen, CHANGED, NOW).interval == pytest.approx(0.8 * DAY)
    assert plan(ADAPTIVE, seen, SAME, NOW).interval == pytest.approx(1.4 * DAY)


def test_adaptive_a_run_of_changes_converges_on_min_interval() -> None:
    interval = DAY
    for _ in range(50):
        interval = plan(ADAPTIVE, History(interval=interval), CHANGED, NOW).interval
        assert interval >= ADAPTIVE.min_interval
    assert interval == ADAPTIVE.min_interval


def test_adaptive_clamps_at_min_and_max() -> None:
    low = plan(ADAPTIVE, History(interval=1.1 * HOUR), CHANGED, NOW)
    assert (low.interval, low.next_fetch_at) == (HOUR, _after(HOUR))
    high = plan(ADAPTIVE, History(interval=29 * DAY), SAME, NOW)
    assert (high.interval, high.next_fetch_at) == (30 * DAY, _after(30 * DAY))
    # An interval stored under older, wider settings is brought back within them.
    assert plan(ADAPTIVE, History(interval=60 * DAY), UNKNOWN, NOW).interval == 30 * DAY
    assert plan(ADAPTIVE, History(interval=60.0), UNKNOWN, NOW).interval == HOUR


@pytest.mark.parametrize(
    ("changefreq", "expected"),
    [("hourly", HOUR), ("daily", DAY), ("weekly", 7 * DAY), ("never", DAY), ("often", DAY)],
)
def test_adaptive_changefreq_hint_is_the_first_interval(changefreq: str, expected: float) -> None:
    history = history_of(_task(changefreq=changefreq))
    p = plan(ADAPTIVE, history, UNKNOWN, NOW)
    assert p.interval == expected
    # Once the URL has an interval of its own, the hint no longer matters.
    own = history_of(_task(changefreq=changefreq, interval=2 * DAY, content_hash="00" * 32))
    assert plan(ADAPTIVE, own, SAME, NOW).interval == pytest.approx(2.8 * DAY)


# --------------------------------------------------------------------------- 404 / 410


@pytest.mark.parametrize("visit", [NOT_FOUND, GONE_410], ids=["404", "410"])
def test_not_found_pushes_out_doubling_then_gone_at_gone_after(visit: Visit) -> None:
    settings = ScheduleSettings(default_interval=DAY, max_interval=30 * DAY, gone_after=4)
    history = History(interval=DAY)
    waits = []
    for n in range(1, 4):
        p = plan(settings, history, visit, NOW)
        assert not p.gone, f"gone after {n} answers, gone_after is 4"
        assert (p.interval, p.not_found, p.failures) == (DAY, n, n)
        assert p.next_fetch_at is not None
        waits.append((p.next_fetch_at - NOW).total_seconds())
        history = History(p.interval, p.failures, p.not_found)
    assert waits == [DAY, 2 * DAY, 4 * DAY]
    last = plan(settings, history, visit, NOW)
    assert last.gone
    assert last.next_fetch_at is None
    assert last.not_found == 4


def test_gone_after_one() -> None:
    settings = ScheduleSettings(gone_after=1)
    p = plan(settings, History(), NOT_FOUND, NOW)
    assert p.gone
    assert p.next_fetch_at is None


def test_not_found_push_out_is_capped_at_max_interval() -> None:
    settings = ScheduleSettings(default_interval=10 * DAY, max_interval=30 * DAY, gone_after=10)
    p = plan(settings, History(interval=10 * DAY, failures=3, not_found=3), NOT_FOUND, NOW)
    assert p.next_fetch_at == _after(30 * DAY)  # not 80 days
    assert p.interval == 10 * DAY


# --------------------------------------------------------------------------- other failures


@pytest.mark.parametrize("visit", [SERVER_ERROR, NO_RESPONSE], ids=["503", "no-response"])
@pytest.mark.parametrize("settings", [FIXED, ADAPTIVE], ids=["fixed", "adaptive"])
def test_other_failures_back_off_from_min_interval_and_keep_the_interval(
    visit: Visit, settings: ScheduleSettings
) -> None:
    history = History(interval=5 * DAY)
    waits = []
    for n in range(1, 6):
        p = plan(settings, history, visit, NOW)
        assert p.interval == 5 * DAY, "a 5xx never changes the interval"
        assert (p.failures, p.not_found, p.gone) == (n, 0, False)
        assert p.next_fetch_at is not None
        waits.append((p.next_fetch_at - NOW).total_seconds())
        history = History(p.interval, p.failures, p.not_found)
    assert waits == [HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR]


def test_failure_back_off_is_capped_at_max_interval() -> None:
    settings = ScheduleSettings(min_interval=HOUR, max_interval=DAY)
    p = plan(settings, History(interval=DAY, failures=20), SERVER_ERROR, NOW)
    assert p.next_fetch_at == _after(DAY)


def test_many_5xx_never_make_a_url_gone() -> None:
    settings = ScheduleSettings(gone_after=2)
    history = History(interval=DAY)
    for _ in range(10):
        p = plan(settings, history, SERVER_ERROR, NOW)
        assert not p.gone
        history = History(p.interval, p.failures, p.not_found)


@pytest.mark.parametrize("visit", [CHANGED, SAME, NOT_MODIFIED, UNKNOWN], ids=str)
def test_success_resets_failures_and_not_found(visit: Visit) -> None:
    for settings in (FIXED, ADAPTIVE):
        p = plan(settings, History(interval=DAY, failures=3, not_found=2), visit, NOW)
        assert (p.failures, p.not_found, p.gone) == (0, 0, False)
        assert p.next_fetch_at is not None
        assert p.next_fetch_at > NOW


def test_a_5xx_between_404s_resets_the_404_run() -> None:
    settings = ScheduleSettings(gone_after=2)
    first = plan(settings, History(interval=DAY), NOT_FOUND, NOW)
    assert (first.not_found, first.gone) == (1, False)
    between = plan(
        settings, History(first.interval, first.failures, first.not_found), SERVER_ERROR, NOW
    )
    assert (between.not_found, between.failures) == (0, 2)
    again = plan(
        settings, History(between.interval, between.failures, between.not_found), NOT_FOUND, NOW
    )
    assert (again.not_found, again.gone) == (1, False), "the 404 run started over"
    assert again.next_fetch_at == _after(DAY)
