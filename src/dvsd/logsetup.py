"""structlog set-up: one key-value event per state change, on stderr."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import structlog


def configure(output: str = "console", level: int = logging.INFO) -> None:
    """Render events as aligned text (``console``) or one JSON object a line."""
    renderer = (
        structlog.processors.JSONRenderer()
        if output == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


@attrs.define
class EventLimiter:
    """Logs at most ``burst`` warnings of one kind an interval, and counts the rest.

    For warnings an outsider can provoke at any rate, such as junk on the
    message queues: the first ``burst`` of each ``interval`` seconds are logged
    in full; the others are only counted, and one ``<event>_repeated`` event
    with their ``count`` follows once the interval is over (at the next
    warning or :meth:`flush`), or at once on :meth:`close`.  Every warning is
    thus either logged or counted.  Safe to call from several threads.
    """

    logger: Any
    event: str
    burst: int = 5
    interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _since: float | None = attrs.field(default=None, init=False)
    _logged: int = attrs.field(default=0, init=False)
    _unlogged: int = attrs.field(default=0, init=False)

    def warning(self, **fields: Any) -> None:
        with self._lock:
            self._close_interval(self.clock(), force=False)
            if self._since is None:
                self._since = self.clock()
            if self._logged < self.burst:
                self._logged += 1
                self.logger.warning(self.event, **fields)
            else:
                self._unlogged += 1

    def flush(self) -> None:
        """Log the count of the unlogged warnings if their interval is over."""
        with self._lock:
            self._close_interval(self.clock(), force=False)

    def close(self) -> None:
        """Log the count of the unlogged warnings now (dvsd is stopping)."""
        with self._lock:
            self._close_interval(self.clock(), force=True)

    def _close_interval(self, now: float, *, force: bool) -> None:
        if self._since is None or (not force and now - self._since < self.interval):
            return
        if self._unlogged:
            self.logger.warning(
                f"{self.event}_repeated",
                count=self._unlogged,
                seconds=round(now - self._since, 1),
            )
        self._since, self._logged, self._unlogged = None, 0, 0
