"""The script runner: what a script is told, timeouts, failures, order."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import attrs
import pytest
import structlog.testing
import trio
from tests.escapes import ESCAPES, escape, kill_strays

from dvsd.scripts import EventFacts, ScriptJob, ScriptRunner, run_script, shell_safe

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scripts" / "dvsd-event.sh"

FACTS = EventFacts(
    event="partition",
    node=1,
    changed=(2, 3),
    self_changed=False,
    cause="network",
    view_id="0a00d501.1700000000.1",
    previous_view_id="0a00d501.1699999999.4",
    members=(0, 1),
    previous_members=(0, 1, 2, 3),
    joined=((4, "merge"),),
    left=((2, "partition"), (3, "partition")),
    transitional=True,
    majority=False,
    sequence=7,
    events=("partition", "merge"),
)


def write_script(path, body: str):
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def test_environment_names_are_shell_names_and_values_are_plain_words():
    environment = FACTS.environment()
    for name, value in environment.items():
        assert name.isidentifier() and name.startswith("DVSD_") and name.isupper()
        assert shlex.split(value) == value.split(), (name, value)
    assert environment["DVSD_EVENT"] == "partition"
    assert environment["DVSD_CHANGED"] == "2 3"
    assert environment["DVSD_SELF_CHANGED"] == "0"
    assert environment["DVSD_MEMBERS"] == "0 1"
    assert environment["DVSD_LEFT"] == "2 3"
    assert environment["DVSD_LEFT_HOW"] == "2:partition 3:partition"
    assert environment["DVSD_JOINED_HOW"] == "4:merge"
    assert environment["DVSD_EVENTS"] == "partition merge"


def test_hostile_view_ids_cannot_break_a_shell():
    assert shell_safe("a b;$(rm -rf /)`x`'\"") == "a_b___rm_-rf____x___"


async def test_script_gets_environment_and_json_on_stdin(tmp_path, monkeypatch):
    # inherited DVSD_* variables must not reach the script
    monkeypatch.setenv("DVSD_EVENT", "stale")
    monkeypatch.setenv("DVSD_SPREAD_DAEMON", "/somewhere/spread")
    script = write_script(
        tmp_path / "event.sh",
        """\
        env | grep '^DVSD_' | sort > "$0.env"
        cat > "$0.json"
        echo "ran $DVSD_EVENT for $DVSD_CHANGED"
        """,
    )
    document = json.dumps(FACTS.document()).encode()
    result = await run_script(
        script, FACTS.process_environment(), document, timeout=10
    )
    assert result.ok, result
    assert result.stdout == "ran partition for 2 3\n"
    written = dict(
        line.split("=", 1)
        for line in (tmp_path / "event.sh.env").read_text().split("\n")
        if line
    )
    assert written == FACTS.environment()
    received = json.loads((tmp_path / "event.sh.json").read_text())
    assert received["left"] == [
        {"node": 2, "how": "partition"},
        {"node": 3, "how": "partition"},
    ]
    assert received["previous_view_id"] == "0a00d501.1699999999.4"
    assert received["changed"] == [2, 3] and received["majority"] is False


async def test_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = write_script(
        tmp_path / "hang.sh",
        f"""\
        sleep 300 &
        echo $! > {pid_file}
        echo started
        wait
        """,
    )
    with trio.fail_after(20):
        result = await run_script(script, dict(os.environ), b"", timeout=1.0)
    assert result.timed_out and result.exit_status == -9
    assert result.stdout == "started\n"
    await assert_ends_soon(int(pid_file.read_text()))


async def test_children_holding_the_pipes_do_not_hold_the_run(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = write_script(
        tmp_path / "leaves.sh",
        f"""\
        sleep 300 &
        echo $! > {pid_file}
        exit 0
        """,
    )
    with trio.fail_after(20):
        result = await run_script(script, dict(os.environ), b"", timeout=60)
    assert result.exit_status == 0 and not result.timed_out
    assert result.duration < 30 and result.leftovers_killed == 1
    await assert_ends_soon(int(pid_file.read_text()))


async def test_children_that_let_go_of_the_pipes_are_killed_too(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = write_script(
        tmp_path / "detaches.sh",
        f"""\
        sleep 300 > /dev/null 2>&1 < /dev/null &
        echo $! > {pid_file}
        """,
    )
    with trio.fail_after(20):
        result = await run_script(script, dict(os.environ), b"", timeout=60)
    assert result.exit_status == 0 and not result.timed_out
    assert result.leftovers_killed == 1
    await assert_ends_soon(int(pid_file.read_text()))


@pytest.mark.parametrize("stay", [False, True], ids=["exits", "times-out"])
@pytest.mark.parametrize("how", sorted(ESCAPES))
async def test_what_leaves_the_process_group_does_not_outlive_the_script(
    tmp_path, how, stay
):
    script = shlex.join(escape(how, stay=stay))
    with trio.fail_after(20):
        result = await run_script(script, dict(os.environ), b"", timeout=1.0)
    escapee = int(result.stdout)
    try:
        assert result.timed_out is stay
        assert result.leftovers_killed == 1
        await assert_ends_soon(escapee)
    finally:
        kill_strays(escapee)


async def assert_ends_soon(pid: int) -> None:
    """The process ``pid`` ends within 5 s (it would sleep 300 s on its own).

    SIGKILL to a group is delivered asynchronously, so wait on a pidfd,
    which becomes readable when the process terminates.
    """
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(descriptor)
    finally:
        os.close(descriptor)


async def test_missing_script_and_unsplittable_entry_are_reported(tmp_path):
    missing = await run_script(str(tmp_path / "nope"), dict(os.environ), b"", 5)
    assert missing.exit_status is None and "No such file" in missing.error
    broken = await run_script("'unclosed", dict(os.environ), b"", 5)
    assert broken.exit_status is None and "cannot split" in broken.error


async def test_runner_serialises_jobs_in_order_and_logs_failures(tmp_path):
    log_file = tmp_path / "order.log"
    slow = write_script(
        tmp_path / "slow.sh",
        f"""\
        echo "start $DVSD_SEQUENCE" >> {log_file}
        sleep 0.3
        echo "end $DVSD_SEQUENCE" >> {log_file}
        """,
    )
    failing = write_script(
        tmp_path / "fail.sh",
        """\
        echo "oops on $DVSD_EVENT" >&2
        exit 3
        """,
    )
    with structlog.testing.capture_logs() as logs:
        runner = ScriptRunner(timeout=10, log=structlog.get_logger("test"))
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            for sequence in (1, 2, 3):
                facts = attrs.evolve(FACTS, sequence=sequence)
                runner.submit(ScriptJob(facts, (slow, failing)))
            with trio.fail_after(20):
                await runner.wait_completed(3)
            nursery.cancel_scope.cancel()
    assert log_file.read_text().split("\n")[:-1] == [
        "start 1",
        "end 1",
        "start 2",
        "end 2",
        "start 3",
        "end 3",
    ]
    failures = [e for e in logs if e["event"] == "script_failed"]
    assert [e["sequence"] for e in failures] == [1, 2, 3]
    assert failures[0]["exit_status"] == 3
    assert failures[0]["stderr"] == "oops on partition\n"
    assert failures[0]["error"] == "exit status 3"
    assert failures[0]["leftovers_killed"] == 0
    done = [e for e in logs if e["event"] == "script_done"]
    assert len(done) == 3 and done[0]["script"] == slow


async def test_a_hung_script_never_stalls_submit_or_the_next_event(tmp_path):
    hung = write_script(tmp_path / "hung.sh", "exec sleep 300\n")
    marker = tmp_path / "next.ran"
    after = write_script(tmp_path / "next.sh", f"touch {marker}\n")
    runner = ScriptRunner(timeout=0.5, log=structlog.get_logger("test"))
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        runner.submit(ScriptJob(FACTS, (hung,)))
        # submit returns at once while the first script hangs
        with trio.fail_after(0.1):
            runner.submit(ScriptJob(FACTS, (after,)))
        with trio.fail_after(20):
            await runner.wait_completed(2)
        nursery.cancel_scope.cancel()
    assert marker.exists()
    assert runner.results[0].timed_out and runner.results[1].ok


async def test_inherited_dvsd_variables_do_not_leak(tmp_path, monkeypatch):
    monkeypatch.setenv("DVSD_STALE", "1")
    out = tmp_path / "env"
    script = write_script(tmp_path / "env.sh", f"env > {out}\n")
    runner = ScriptRunner(timeout=10, log=structlog.get_logger("test"))
    await runner.run_job(ScriptJob(FACTS, (script,)))
    names = {line.split("=", 1)[0] for line in out.read_text().splitlines()}
    assert "DVSD_STALE" not in names and "DVSD_EVENT" in names
    assert "PATH" in names


@pytest.mark.parametrize("event", ["join", "partition"])
def test_sample_script_runs(tmp_path, event):
    facts = attrs.evolve(FACTS, event=event)
    log = tmp_path / "events.log"
    done = subprocess.run(
        [str(SAMPLE), str(log)],
        input=json.dumps(facts.document()).encode(),
        env=facts.process_environment(),
        capture_output=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert f"node=1 event={event} changed=[2 3] self=0" in text
    assert "  left 2 (partition)\n  left 3 (partition)\n  joined 4 (merge)\n" in text
    assert json.loads(text.split("  json ", 1)[1]) == facts.document()
    minority = b"node 1 is in a minority partition\n"
    assert (done.stderr == minority) is (event == "partition")
