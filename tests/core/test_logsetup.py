"""Warnings an outsider can provoke at any rate are logged a few at a time."""

from __future__ import annotations

import threading

import structlog
import structlog.testing

from dvsd.logsetup import EventLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_logs_a_burst_then_one_summary_with_the_count():
    clock = Clock()
    limiter = EventLimiter(
        structlog.get_logger(), "junk_dropped", burst=3, interval=10.0, clock=clock
    )
    with structlog.testing.capture_logs() as logs:
        for size in range(20):
            limiter.warning(size=size)
        limiter.flush()  # the interval is not over: nothing to say yet
        assert [entry.get("size") for entry in logs] == [0, 1, 2]
        clock.now += 10.0
        limiter.flush()
        limiter.flush()  # counted once only
        limiter.warning(size=99)  # a new interval starts with a full burst
    summaries = [entry for entry in logs if entry["event"] == "junk_dropped_repeated"]
    assert [(s["count"], s["seconds"]) for s in summaries] == [(17, 10.0)]
    assert logs[-1] == {"event": "junk_dropped", "size": 99, "log_level": "warning"}


def test_limiter_close_reports_what_is_left_at_once():
    limiter = EventLimiter(structlog.get_logger(), "junk_dropped", burst=1)
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            limiter.warning()
        limiter.close()
        limiter.close()
    assert [(entry["event"], entry.get("count")) for entry in logs] == [
        ("junk_dropped", None),
        ("junk_dropped_repeated", 3),
    ]


def test_limiter_counts_every_event_from_several_threads():
    clock = Clock()
    limiter = EventLimiter(structlog.get_logger(), "junk_dropped", burst=5, clock=clock)

    def flood() -> None:
        for _ in range(1000):
            limiter.warning()

    with structlog.testing.capture_logs() as logs:
        threads = [threading.Thread(target=flood) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        limiter.close()
    single = sum(1 for entry in logs if entry["event"] == "junk_dropped")
    repeated = sum(
        entry["count"] for entry in logs if entry["event"] == "junk_dropped_repeated"
    )
    assert (single, single + repeated) == (5, 4000)
