"""The membership event scripts: what each run is told, and the task that runs them.

Every membership event (see :mod:`dvsd.membership`) becomes one
:class:`EventFacts`.  The facts reach a script twice: as ``DVSD_*``
environment variables whose values are only ids, words and ``:`` (safe to
expand unquoted in any shell) and as one JSON document on standard input.

:class:`ScriptRunner` owns one queue and one task.  ``submit`` never blocks,
so the daemon's event loop never waits for a script; the runner takes jobs
in the order they were submitted and runs each job's scripts one after the
other, each in its own session with its own timeout, under a
:mod:`dvsd.guard` that kills whatever the script started when it ends, and
should dvsd die first.  A script that hangs is killed with everything it
started when the timeout passes, and the next job starts then; one that
fails is logged and changes nothing else.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Callable
from typing import Any

import attrs
import structlog
import trio

from dvsd.guarded import run_guarded

#: Bytes of standard output and of standard error kept (and logged) per run.
OUTPUT_CAP = 16 * 1024

_SAFE_WORD = re.compile(r"[^A-Za-z0-9._:+-]")


def shell_safe(value: str) -> str:
    """``value`` with every character a shell would treat specially made ``_``."""
    return _SAFE_WORD.sub("_", value)


def _ids(nodes: tuple[int, ...]) -> str:
    return " ".join(str(node) for node in nodes)


def _pairs(entries: tuple[tuple[int, str], ...]) -> str:
    return " ".join(f"{node}:{shell_safe(how)}" for node, how in entries)


@attrs.frozen
class EventFacts:
    """What one script run is told about one membership event.

    ``changed`` are the nodes this event is about; ``joined`` and ``left``
    cover the whole view change (a network change may give a PARTITION and a
    MERGE from one view), each entry ``(node, how)`` with ``how`` one of
    ``join``, ``merge`` and ``leave``, ``disconnect``, ``partition``.
    """

    event: str
    node: int
    changed: tuple[int, ...]
    self_changed: bool
    cause: str
    view_id: str
    previous_view_id: str
    members: tuple[int, ...]
    previous_members: tuple[int, ...]
    joined: tuple[tuple[int, str], ...]
    left: tuple[tuple[int, str], ...]
    transitional: bool
    majority: bool
    #: 1 for the first event since this dvsd started, then +1 per event.
    sequence: int
    #: Every event of this view change, in the order their scripts run.
    events: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        """The ``DVSD_*`` variables (names and values documented in membership.md)."""
        return {
            "DVSD_EVENT": shell_safe(self.event),
            "DVSD_NODE": str(self.node),
            "DVSD_CHANGED": _ids(self.changed),
            "DVSD_SELF_CHANGED": "1" if self.self_changed else "0",
            "DVSD_CAUSE": shell_safe(self.cause),
            "DVSD_VIEW_ID": shell_safe(self.view_id),
            "DVSD_PREVIOUS_VIEW_ID": shell_safe(self.previous_view_id),
            "DVSD_MEMBERS": _ids(self.members),
            "DVSD_PREVIOUS_MEMBERS": _ids(self.previous_members),
            "DVSD_JOINED": _ids(tuple(node for node, _ in self.joined)),
            "DVSD_JOINED_HOW": _pairs(self.joined),
            "DVSD_LEFT": _ids(tuple(node for node, _ in self.left)),
            "DVSD_LEFT_HOW": _pairs(self.left),
            "DVSD_TRANSITIONAL": "1" if self.transitional else "0",
            "DVSD_MAJORITY": "1" if self.majority else "0",
            "DVSD_SEQUENCE": str(self.sequence),
            "DVSD_EVENTS": " ".join(shell_safe(event) for event in self.events),
        }

    def process_environment(self) -> dict[str, str]:
        """dvsd's own environment with every ``DVSD_*`` variable replaced by ours.

        An inherited ``DVSD_*`` variable (``DVSD_CONFIG``, a stale
        ``DVSD_EVENT`` from the shell that started dvsd) never reaches a
        script: that prefix belongs to the event.
        """
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("DVSD_")
        }
        return inherited | self.environment()

    def document(self) -> dict[str, Any]:
        """The JSON document written to the script's standard input."""
        return {
            "event": self.event,
            "node": self.node,
            "changed": list(self.changed),
            "self_changed": self.self_changed,
            "cause": self.cause,
            "view_id": self.view_id,
            "previous_view_id": self.previous_view_id or None,
            "members": list(self.members),
            "previous_members": list(self.previous_members),
            "joined": [{"node": node, "how": how} for node, how in self.joined],
            "left": [{"node": node, "how": how} for node, how in self.left],
            "transitional": self.transitional,
            "majority": self.majority,
            "sequence": self.sequence,
            "events": list(self.events),
        }


@attrs.frozen
class ScriptJob:
    """The scripts configured for one event, and the facts they are given."""

    facts: EventFacts
    scripts: tuple[str, ...]


@attrs.frozen
class ScriptResult:
    """How one script run ended.

    ``exit_status`` is the process's exit code, or minus the signal number
    that ended it, or None when it could not be started (``error`` says
    why).  ``timed_out`` means the runner killed it at its timeout.
    ``leftovers_killed`` counts the other processes it had started that
    were still running when it ended, and were killed.
    """

    script: str
    exit_status: int | None
    timed_out: bool
    stdout: str
    stderr: str
    duration: float
    error: str | None = None
    leftovers_killed: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out


def _keep(kept: bytearray) -> Callable[[bytes], None]:
    """A sink that keeps the first OUTPUT_CAP bytes it is given in ``kept``."""

    def feed(chunk: bytes) -> None:
        room = OUTPUT_CAP - len(kept)
        if room > 0:
            kept.extend(chunk[:room])

    return feed


async def run_script(
    script: str,
    environment: dict[str, str],
    stdin: bytes,
    timeout: float,
    log: Any = None,
) -> ScriptResult:
    """Run one script to its end or its timeout; never raises for the script's faults.

    ``script`` is split like a shell word list (``/path/to/x --flag``) and run
    without a shell.  Standard output and error are kept up to
    :data:`OUTPUT_CAP` bytes each.  It runs through
    :func:`dvsd.guarded.run_guarded`, so it ends with its timeout, with a
    cancelled runner, and with dvsd, and so does everything it started.
    ``log`` hears of a guard that failed to do its part.
    """
    try:
        argv = shlex.split(script)
    except ValueError as error:
        argv, split_error = [], f"cannot split {script!r}: {error}"
    else:
        split_error = None if argv else "empty script entry"
    if split_error is not None:
        return ScriptResult(script, None, False, "", "", 0.0, split_error)
    stdout, stderr = bytearray(), bytearray()
    run = await run_guarded(
        argv,
        timeout=timeout,
        stdout=_keep(stdout),
        stderr=_keep(stderr),
        stdin=stdin,
        env=environment,
        log=log,
    )
    if run.start_error is not None:
        error = f"{run.start_error}: {argv[0]}"
        return ScriptResult(script, None, False, "", "", 0.0, error)
    return ScriptResult(
        script=script,
        exit_status=run.exit_status,
        timed_out=run.timed_out,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        duration=run.duration,
        leftovers_killed=run.leftovers_killed,
    )


@attrs.define
class ScriptRunner:
    """One queue of script jobs and the one task that drains it, in order."""

    timeout: float
    log: Any = attrs.field(factory=lambda: structlog.get_logger("dvsd.scripts"))
    #: Jobs fully run so far (every script of the job ended or was killed).
    completed: int = 0
    results: list[ScriptResult] = attrs.field(factory=list)
    #: How many results to keep in ``results`` (for DVSNODES and tests).
    keep_results: int = 64
    _send: Any = None
    _receive: Any = None
    _progress: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[ScriptJob](math.inf)

    def submit(self, job: ScriptJob) -> None:
        """Queue a job; returns at once (the queue has no bound)."""
        self._send.send_nowait(job)

    @property
    def pending(self) -> int:
        """Jobs queued and not yet finished."""
        return self._receive.statistics().current_buffer_used

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drain the queue until cancelled."""
        task_status.started()
        try:
            async for job in self._receive:
                await self.run_job(job)
                self.completed += 1
                self._progress.set()
                self._progress = trio.Event()
        finally:
            dropped = 0
            while True:
                try:
                    self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                dropped += 1
            if dropped:
                self.log.warning(
                    "script_jobs_dropped", jobs=dropped, reason="dvsd stopping"
                )

    async def wait_completed(self, count: int) -> None:
        """Return once ``count`` jobs have finished since the runner was made."""
        while self.completed < count:
            await self._progress.wait()

    async def run_job(self, job: ScriptJob) -> None:
        facts = job.facts
        environment = facts.process_environment()
        document = json.dumps(facts.document(), sort_keys=True).encode() + b"\n"
        log = self.log.bind(
            membership_event=facts.event, view=facts.view_id, sequence=facts.sequence
        )
        for script in job.scripts:
            try:
                result = await run_script(
                    script, environment, document, self.timeout, log=log
                )
            except BaseException:
                # Cancelled (possibly inside an exception group) when dvsd
                # stops: run_script has killed the group; say so before leaving.
                log.warning(
                    "script_failed", script=script, error="killed: dvsd stopping"
                )
                raise
            self.results.append(result)
            del self.results[: -self.keep_results]
            fields = {
                "script": script,
                "exit_status": result.exit_status,
                "timed_out": result.timed_out,
                "leftovers_killed": result.leftovers_killed,
                "duration": result.duration,
                "stdout": result.stdout,
                "stderr": result.stderr,
            }
            if result.ok:
                log.info("script_done", **fields)
            elif result.error is not None:
                log.warning("script_failed", error=result.error, **fields)
            elif result.timed_out:
                log.warning(
                    "script_failed",
                    error=f"killed after the {self.timeout:g} s timeout",
                    **fields,
                )
            else:
                log.warning(
                    "script_failed",
                    error=f"exit status {result.exit_status}",
                    **fields,
                )
