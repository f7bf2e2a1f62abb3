"""An administrator's and a stray program's mistakes, against real dvsd processes.

Each test here reproduces one bug found by adversarial testing (a stray
program on the queues, a stopped client, a config that parses but cannot
work, ...) and now guards its fix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import sysv_ipc
from tests.e2e.conftest import start_policy_node
from tests.e2e.harness import (
    REPO,
    Node,
    PidPipe,
    ends_within,
    environment,
    kill_group,
    queue_row,
)
from tests.e2e.harness import dvsctl_as_typed as dvsctl

from dvsd import config

#: SysV message types dvsd reserves on its request queue (see msgq.py).
WAKE_MTYPE = 2
GETDVSINFO = 2
COMMAND = 28


def queue(key: int) -> sysv_ipc.MessageQueue:
    return sysv_ipc.MessageQueue(key, max_message_size=8192)


def raw_request(**fields) -> bytes:
    message = {
        "op": "request",
        "client": os.getpid(),
        "cseq": 1,
        "reply_type": os.getpid(),
        "rqst_type": GETDVSINFO,
        "destinations": [],
        "params": {},
        "timeout": 2.0,
    }
    message.update(fields)
    return msgpack.packb(message, use_bin_type=True)


def answer_to(node, request: bytes) -> dict:
    """Put raw ``request`` on the queue as this process; dvsd's decoded answer.

    The answer is read in a thread, as dvsctl blocks in msgrcv; if none
    comes within 10 s the thread is unblocked for the tests that follow.
    """
    replies = queue(node.reply_key)
    answer: list[bytes] = []

    def receive() -> None:
        data, _ = replies.receive(type=os.getpid())
        answer.append(data)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    queue(node.request_key).send(request, type=1)
    reader.join(10)
    if not answer:
        replies.send(b"\0" * 8, type=os.getpid())
    assert answer, "dvsd sent no reply"
    return msgpack.unpackb(answer[0][8:], raw=False)


def queue_limit() -> int:
    """The most bytes one SysV queue holds (msgmnb, 16384 by default)."""
    with open("/proc/sys/kernel/msgmnb") as source:
        return int(source.read())


def queued_bytes(key: int) -> int:
    """Bytes on the queue with this key, from /proc/sysvipc/msg."""
    return queue_row(key)["cbytes"]


def test_stray_wake_message_does_not_close_the_request_queue(node):
    queue(node.request_key).send(b"", type=WAKE_MTYPE)
    done = dvsctl(node, "--timeout", "2", "status")
    assert done.returncode == 0, done.stderr


def test_unread_message_types_cannot_fill_the_request_queue(node):
    requests = queue(node.request_key)
    limit = queue_limit()
    # dvsd drops stray types as they come, so the room left changes under us:
    # send what fits, without blocking, until not even one byte does (bounded).
    for _ in range(10_000):
        room = limit - queued_bytes(node.request_key)
        size = max(1, min(8000, room))
        try:
            requests.send(b"x" * size, block=False, type=9)
        except sysv_ipc.BusyError:
            if size == 1:
                break
    done = dvsctl(node, "--timeout", "2", "status")
    assert done.returncode == 0, done.stderr


def test_replies_nobody_reads_do_not_jam_the_reply_queue(node):
    replies_key = node.reply_key
    limit = queue_limit()
    requests = queue(node.request_key)
    size = 0
    cseq = 0
    # pid 1 is alive and never reads: each reply stays queued under type 1.
    while size == 0 or limit - queued_bytes(replies_key) >= size + 64:
        before = queued_bytes(replies_key)
        cseq += 1
        mark = node.log.mark()
        requests.send(raw_request(client=1, reply_type=1, cseq=cseq, timeout=0.5))
        node.log.wait_for(lambda e: e.get("event") == "request_answered", since=mark)
        size = max(size, queued_bytes(replies_key) - before)
    # Less room is left than one small reply; a 4 kB reply cannot fit.  The
    # stray requests' deadlines are long past once a sweep has run.
    done = dvsctl(
        node, "--timeout", "15", "command", "--", "head", "-c", "4000", "/dev/zero"
    )
    assert done.returncode == 0, done.stderr


def test_a_client_that_does_not_read_cannot_block_the_others(node):
    mark = node.log.mark()
    frozen = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, sysv_ipc\n"
            "q = sysv_ipc.MessageQueue(int(sys.argv[1]), max_message_size=8192)\n"
            "q.send(sys.stdin.buffer.read(), type=1)\n"
            "print('sent', flush=True)\n"
            "time.sleep(120)\n",
            str(node.request_key),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        request = raw_request(
            client=frozen.pid,
            reply_type=frozen.pid,
            rqst_type=COMMAND,
            params={"argv": ["head", "-c", "90000", "/dev/zero"]},
            timeout=60.0,
        )
        frozen.stdin.write(request)
        frozen.stdin.close()
        assert frozen.stdout.readline() == b"sent\n"
        node.log.wait_for(
            lambda e: (
                e.get("event") == "request_answered" and e.get("rqst") == "COMMAND"
            ),
            since=mark,
        )
        done = dvsctl(node, "--timeout", "3", "status")
        assert done.returncode == 0, done.stderr
    finally:
        frozen.kill()
        frozen.wait()


@pytest.mark.parametrize("timeout", [float("inf"), float("nan")])
def test_non_finite_timeout_on_the_queue_gets_an_answer(node, timeout):
    reply = answer_to(node, raw_request(cseq=7, timeout=timeout))
    assert reply["rcode"] == -1001


@pytest.mark.parametrize("value", ["1e12", "inf", "1e9"])
def test_huge_timeout_is_a_usage_error(node, value):
    done = dvsctl(node, "--timeout", value, "dvs", "info")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--timeout" in done.stderr


@pytest.mark.parametrize("value", ["-1", "65536"])
def test_out_of_range_node_is_a_usage_error(node, value):
    done = dvsctl(node, "--node", value, "dvs", "info")
    assert done.returncode == 2, done.stderr


def test_call_command_with_a_string_argv(node):
    done = dvsctl(node, "call", "COMMAND", "argv=head")
    assert "'h' is not an executable" not in done.stdout + done.stderr
    assert done.returncode in (0, 2)


def test_closed_stdout_gives_no_traceback(node):
    with subprocess.Popen(
        [sys.executable, "-m", "dvsd.cli", "--config", str(node.config_path), "ps"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        cwd=REPO,
    ) as process:
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(60)
    assert "Traceback" not in stderr


def test_bad_spread_address_is_a_configuration_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[gcs]\ntransport = "spread"\ndaemon = "nonsense"\n')
    with pytest.raises(config.ConfigError, match="gcs.daemon"):
        config.load(path)


@pytest.mark.parametrize("value", ["inf", "nan", "1e12"])
def test_non_finite_request_timeout_is_a_configuration_error(tmp_path, value):
    path = tmp_path / "timeout.toml"
    path.write_text(f"[requests]\ntimeout = {value}\n")
    with pytest.raises(config.ConfigError, match="requests.timeout"):
        config.load(path)


def test_msgq_mode_applies_to_existing_queues(tmp_path):
    node = Node(tmp_path, 0, {"transport": "single-node"}, extra="")
    # Left by an earlier dvsd started with mode = 0o666.
    for key in (node.request_key, node.reply_key):
        sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREAT, mode=0o666)
    try:
        node.start()
        node.wait_view(1)
        modes = {
            oct(queue(key).mode & 0o777) for key in (node.request_key, node.reply_key)
        }
        assert modes == {oct(0o660)}
    finally:
        node.cleanup()


@pytest.mark.parametrize("force", ["no", '"false"'])
def test_kill_force_spelled_as_a_word_is_not_true(node, force):
    # Signal 0 only checks that the process exists: nothing is delivered.
    # It is given as the string "0" (the type KILL takes), so the request
    # passes every other check and only the force value can stop it.
    done = dvsctl(node, "call", "KILL", "pid=1", 'signal="0"', f"force={force}")
    assert done.returncode in (1, 2), done.stdout
    assert "force" in done.stderr + done.stdout
    assert "sent    True" not in done.stdout


@pytest.mark.parametrize(
    "background",
    ["sleep 300 &", "setsid sleep 300 &"],
    ids=["in-the-group", "own-session"],
)
def test_command_does_not_outlive_a_killed_dvsd(tmp_path, background):
    # The command may run a minute: only dvsd's death can end it this soon.
    node = Node(
        tmp_path,
        0,
        {"transport": "single-node"},
        extra='[host]\ncommand = "allow"\ncommand_shell = true\n'
        'command_allow = ["sh", "sleep"]\n',
    )
    pipe = PidPipe(tmp_path / "pid.fifo")
    line = f'{background} echo $! > "{pipe.path}"; wait'
    pid = None
    node.start()
    try:
        node.wait_view(1)
        asking = subprocess.Popen(
            [sys.executable, "-m", "dvsd.cli", "--config", str(node.config_path)]
            + ["command", "--shell", line, "--command-timeout", "60"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(),
            cwd=REPO,
        )
        pid = pipe.read_pid()
        node.kill()
        assert ends_within(pid, 5), "the command's child outlived a killed dvsd"
        asking.kill()
        asking.wait(10)
    finally:
        if pid is not None:
            kill_group(pid)
        pipe.close()
        node.cleanup()


def test_a_flood_of_junk_is_logged_a_few_lines_at_a_time(node):
    requests = queue(node.request_key)
    junk = 400
    for _ in range(junk):
        requests.send(b"junk", type=9)  # a type dvsd does not use
        requests.send(b"\xc1", type=1)  # a request that is not MessagePack
    # dvsd reads its queue in order: once this is answered, all junk was seen.
    done = dvsctl(node, "--timeout", "5", "status")
    assert done.returncode == 0, done.stderr
    node.stop()
    node.log.wait_for(lambda e: e.get("event") == "dvsd_stopped")
    for event in ("stray_queue_message_dropped", "client_message_rejected"):
        logged = node.log.count(lambda e, event=event: e.get("event") == event)
        unlogged = sum(
            e["count"] for e in node.log.events if e.get("event") == f"{event}_repeated"
        )
        # a few lines, yet every message is accounted for
        assert logged <= 10, (event, logged)
        assert logged + unlogged == junk, (event, logged, unlogged)


def queued_at_a_stopped_dvsd(node, *args: str) -> subprocess.Popen:
    """SIGSTOP dvsd, start ``dvsctl args``; return once its request is queued.

    A stopped dvsd's reading thread has left msgrcv, so the request stays on
    the queue.  dvsd is left stopped; the client is killed if it never queues.
    """
    node.process.send_signal(signal.SIGSTOP)
    assert _within(10, lambda: _stopped(node.process.pid))
    client = subprocess.Popen(
        [sys.executable, "-m", "dvsd.cli", "--config", str(node.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        cwd=REPO,
    )
    if not _within(20, lambda: queue_row(node.request_key)["qnum"] == 1):
        client.kill()
        client.wait()
        raise AssertionError("dvsctl's request never reached the queue")
    return client


@pytest.fixture
def touch_node(tmp_path):
    """A single-node dvsd that lets COMMAND run `touch`: a visible side effect."""
    node = start_policy_node(tmp_path, ["touch"])
    yield node
    node.cleanup()


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` has stopped (SIGSTOP took effect)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [
        (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        for task in tasks.iterdir()
    ]
    return all(state == "T" for state in states)


def _within(seconds: float, condition) -> bool:
    """Whether ``condition()`` becomes true within ``seconds`` (checked often)."""
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True


def test_a_request_its_client_was_told_failed_is_not_run_after_a_restart(
    touch_node, tmp_path
):
    node, marker = touch_node, tmp_path / "marker"
    client = queued_at_a_stopped_dvsd(
        node, "--timeout", "30", "command", "--", "touch", str(marker)
    )
    try:
        node.kill()
        _, stderr = client.communicate(timeout=20)
    finally:
        client.kill()
        client.wait()
    assert client.returncode == 3, stderr
    assert "exited while the request was in flight" in stderr

    node.start()  # the same queues, the stale request still on them
    node.wait_view(1)
    outcome = node.log.wait_for(
        lambda e: e.get("event") in ("request_stale_dropped", "request_done")
    )
    assert not marker.exists(), "the command ran though its client saw it fail"
    assert outcome["event"] == "request_stale_dropped"
    assert (outcome["client"], outcome["reason"]) == (client.pid, "client gone")


def test_a_request_older_than_its_timeout_is_answered_not_run(touch_node, tmp_path):
    node, marker = touch_node, tmp_path / "marker"
    request = raw_request(
        cseq=11,
        rqst_type=COMMAND,
        params={"argv": ["touch", str(marker)]},
        timeout=5.0,
        sent_at=time.time() - 60,  # e.g. it sat on the queue of a stopped dvsd
    )
    reply = answer_to(node, request)
    assert reply["rcode"] == -1004  # TIMEOUT
    assert "not run" in reply["error"]
    assert not marker.exists()
    dropped = node.log.wait_for(lambda e: e.get("event") == "request_stale_dropped")
    assert (dropped["cseq"], dropped["reason"]) == (11, "deadline passed")


def test_a_status_answered_too_late_is_a_sentence_not_a_traceback(node):
    client = queued_at_a_stopped_dvsd(node, "--timeout", "1", "status")
    try:
        # Let the request outlive its 1 s timeout; dvsctl waits 3 s more.
        stale_at = time.monotonic() + 1.2
        while time.monotonic() < stale_at:
            time.sleep(stale_at - time.monotonic())
    finally:
        node.process.send_signal(signal.SIGCONT)
    _, stderr = client.communicate(timeout=20)
    assert "Traceback" not in stderr
    assert client.returncode == 3, stderr
    assert "not run" in stderr
