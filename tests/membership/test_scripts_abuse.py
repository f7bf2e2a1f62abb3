"""Hostile event scripts and restart storms against real dvsd processes.

Three dvsd nodes on the stand-in Spread daemon run scripts that hang, spam,
live at awkward paths, or try to outlive dvsd.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from tests.e2e.harness import Node, PidPipe, ends_within, kill_group

from dvsd.config import ConfigError, from_mapping

EVENTS = ("join", "leave", "disconnect", "partition", "merge")


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def scripted_node(tmp_path, daemon, node_id, scripts, timeout) -> Node:
    lines = ["[scripts]"]
    lines += [f"{event} = {json.dumps(list(entries))}" for event, entries in scripts]
    lines += [f"timeout = {timeout}", "[cluster]", "nodes = [0, 1, 2]"]
    return Node(
        tmp_path,
        node_id,
        {"transport": "spread", "daemon": daemon.tcp_address},
        extra="\n".join(lines) + "\n",
    )


def script_ended(node: Node, view: str, script: str, timeout: float = 30.0):
    return node.log.wait_for(
        lambda e: (
            e.get("event") in ("script_done", "script_failed")
            and e.get("view") == view
            and e.get("script") == script
        ),
        timeout,
    )


@pytest.fixture
def standin(spread_daemon_factory):
    return spread_daemon_factory.start("standin")


def test_restart_storm_runs_each_change_once_in_view_order(tmp_path, standin):
    """Node 2 is killed and restarted 5 times; nodes 0 and 1 each record every
    change exactly once, in view order, although node 0's first script hangs
    past its timeout every time; node 2 reports its own JOIN each time.  The
    recorder lives at a path with spaces, quotes and non-ASCII letters."""
    odd = tmp_path / "dir with space 'q\" é"
    odd.mkdir()
    recorder = write_script(
        odd / "réc ord.sh",
        'echo "$DVSD_SEQUENCE $DVSD_EVENT $DVSD_CHANGED $DVSD_SELF_CHANGED'
        ' $DVSD_VIEW_ID" >> "$1"\n',
    )
    hang = write_script(tmp_path / "hang.sh", "echo spam; exec sleep 300\n")
    records = [tmp_path / f"records.{node}" for node in range(3)]

    def entry(node: int) -> str:
        return f"{shlex.quote(str(recorder))} {shlex.quote(str(records[node]))}"

    nodes = [
        scripted_node(
            tmp_path, standin, 0, [(e, [str(hang), entry(0)]) for e in EVENTS], 0.3
        ),
        scripted_node(tmp_path, standin, 1, [(e, [entry(1)]) for e in EVENTS], 5),
        scripted_node(tmp_path, standin, 2, [(e, [entry(2)]) for e in EVENTS], 5),
    ]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_view(3)
        victim = nodes[2]
        own_views = []
        for _ in range(5):
            victim.kill()
            victim.start()
            view = victim.wait_view(3)["view"]
            done = script_ended(victim, view, entry(2))
            assert done["event"] == "script_done", done
            own_views.append(view)
        for node in nodes[:2]:
            script_ended(node, own_views[-1], entry(node.node_id))
            lines = [
                line.split() for line in records[node.node_id].read_text().splitlines()
            ]
            # after the first 3-member view: disconnect/join pairs, one per view
            storm = [line for line in lines if line[1] != "join" or line[2] == "2"]
            storm = storm[-10:]
            assert [line[1] for line in storm] == ["disconnect", "join"] * 5
            assert all(line[2] == "2" and line[3] == "0" for line in storm)
            assert [line[4] for line in storm[1::2]] == own_views
            sequences = [int(line[0]) for line in lines]
            assert sequences == list(range(1, len(lines) + 1)), "replayed or lost"
            views = [line[4] for line in lines]
            assert len(set(views)) == len(views), "a view ran its scripts twice"
        timeouts = nodes[0].log.count(
            lambda e: e.get("event") == "script_failed" and e.get("timed_out")
        )
        assert timeouts >= 10
        for line in records[2].read_text().splitlines()[-5:]:
            sequence, event, changed, self_changed, _view = line.split()
            assert (sequence, event, changed, self_changed) == ("1", "join", "2", "1")
        assert [
            line.split()[4] for line in records[2].read_text().splitlines()[-5:]
        ] == (own_views)
    finally:
        for node in nodes:
            node.cleanup()


def test_script_killed_by_dvsd_stop_is_logged(tmp_path, standin):
    pipe = PidPipe(tmp_path / "pid.fifo")
    hang = write_script(tmp_path / "hang.sh", f'echo $$ > "{pipe.path}"\nsleep 300\n')
    node = scripted_node(tmp_path, standin, 0, [("join", [str(hang)])], 60)
    pid = None
    try:
        node.start()
        pid = pipe.read_pid()
        node.stop()
        assert node.process.returncode == 0
        # the group is killed on the way out (this part holds today)
        assert ends_within(pid, 5)
        killed = [
            e
            for e in node.log.events
            if e.get("event") == "script_failed" and e.get("membership_event") == "join"
        ]
        assert killed, "the run killed by the stop left no log line"
    finally:
        if pid is not None:
            kill_group(pid)
        pipe.close()
        node.cleanup()


def test_script_and_its_children_end_when_dvsd_is_killed(tmp_path, standin):
    # The timeout is a minute: only dvsd's death can end the script this soon.
    pipe = PidPipe(tmp_path / "pid.fifo")
    hang = write_script(
        tmp_path / "hang.sh", f'sleep 300 &\necho $! > "{pipe.path}"\nwait\n'
    )
    node = scripted_node(tmp_path, standin, 0, [("join", [str(hang)])], 60)
    pid = None
    try:
        node.start()
        pid = pipe.read_pid()
        node.kill()
        assert ends_within(pid, 5), "the script's child outlived a killed dvsd"
    finally:
        if pid is not None:
            kill_group(pid)
        pipe.close()
        node.cleanup()


@pytest.mark.parametrize("entry", ["", "   ", "'/usr/local/lib/dvsd/fence.sh"])
def test_config_rejects_entries_that_cannot_be_split(entry):
    with pytest.raises(ConfigError, match="scripts.join"):
        from_mapping({"scripts": {"join": [entry]}})
