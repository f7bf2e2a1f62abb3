"""Second adversarial pass: bugs found against real dvsd processes.

Each test reproduced one bug (a waiting dvsctl watching the wrong process, a
flood of unread replies, edge values in KILL and the cgroup setters, ...) and
now guards its fix.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import sysv_ipc
from tests.e2e.harness import REPO, environment, kill_group
from tests.e2e.harness import dvsctl_as_typed as dvsctl


def test_dvsctl_does_not_take_a_busy_dvsd_for_a_dead_one(node):
    # dvsd reads its queue from worker threads that come and go; a waiting
    # dvsctl must watch dvsd itself (its lock), not whichever thread read last.
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dvsd.cli",
            "--config",
            str(node.config_path),
            "--timeout",
            "20",
            "call",
            "PIDSTAT",
            "interval=1.0",
            "count=12",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        cwd=REPO,
    )
    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(max_workers=15) as pool:
            rounds = list(pool.map(lambda _: dvsctl(node, "dvs", "nodes"), range(15)))
        assert all(done.returncode == 0 for done in rounds)
    _, stderr = waiting.communicate(timeout=40)
    assert waiting.returncode == 0, stderr


def _flood(key: int, seconds: float) -> subprocess.Popen:
    """A client that asks for 100 kB replies as fast as it can and reads none."""
    code = (
        "import os, sys, time, msgpack, sysv_ipc\n"
        "q = sysv_ipc.MessageQueue(int(sys.argv[1]), max_message_size=8192)\n"
        "pid, k, end = os.getpid(), 0, time.monotonic() + float(sys.argv[2])\n"
        "print('flooding', flush=True)\n"
        "while time.monotonic() < end:\n"
        "    k += 1\n"
        "    q.send(msgpack.packb({'op': 'request', 'client': pid, 'cseq': k,\n"
        "        'reply_type': pid | k << 22, 'rqst_type': 28, 'destinations': [],\n"
        "        'params': {'argv': ['head', '-c', '100000', '/dev/zero']},\n"
        "        'timeout': 5.0}, use_bin_type=True), type=1)\n"
        "    time.sleep(0.05)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(key), str(seconds)],
        stdout=subprocess.PIPE,
        env=environment(),
    )


def test_a_flooding_non_reader_cannot_starve_reading_clients(node):
    flood = _flood(node.request_key, 40.0)
    try:
        assert flood.stdout.readline() == b"flooding\n"
        failures = []
        give_up = time.monotonic() + 35.0
        while time.monotonic() < give_up and not failures:
            done = dvsctl(node, "--timeout", "5", "dvs", "nodes", timeout=30)
            if done.returncode != 0:
                failures.append((done.returncode, done.stderr))
        assert not failures
    finally:
        flood.kill()
        flood.wait()


def _non_readers(key: int, clients: int, seconds: float) -> subprocess.Popen:
    """``clients`` processes asking for 100 kB replies, 27 a second in all.

    None reads a reply: each one's unread chunks fill the 16 KiB reply
    queue until dvsd sees that nobody takes them.
    """
    code = (
        "import os, sys, time, msgpack, sysv_ipc\n"
        "q = sysv_ipc.MessageQueue(int(sys.argv[1]), max_message_size=8192)\n"
        "clients, seconds = int(sys.argv[2]), float(sys.argv[3])\n"
        "parent = os.getpid()\n"
        "for index in range(clients - 1):\n"
        "    if os.fork() == 0:\n"
        "        break\n"
        "pid, k, end = os.getpid(), 0, time.monotonic() + seconds\n"
        "if pid == parent:\n"
        "    print('flooding', flush=True)\n"
        "while time.monotonic() < end:\n"
        "    k = k % 511 + 1\n"
        "    q.send(msgpack.packb({'op': 'request', 'client': pid, 'cseq': k,\n"
        "        'reply_type': pid | k << 22, 'rqst_type': 1000, 'destinations': [],\n"
        "        'params': {'size': 100000}, 'timeout': 5.0}), type=1)\n"
        "    time.sleep(clients / 27)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(key), str(clients), str(seconds)],
        stdout=subprocess.PIPE,
        env=environment(),
        start_new_session=True,  # the forked clients end with their group
    )


def test_clients_that_never_read_cannot_hold_the_reply_queue(node):
    # Each new non-reader used to hold the queue for REPLY_LIFETIME (3 s)
    # before its chunks were swept: eight of them kept dvsctl waiting 12 s.
    flood = _non_readers(node.request_key, clients=8, seconds=30.0)
    try:
        assert flood.stdout.readline() == b"flooding\n"
        answers = [
            dvsctl(node, "--timeout", "5", "status", timeout=30) for _ in range(5)
        ]
        assert flood.poll() is None, "the flood ended before the last status"
    finally:
        kill_group(flood.pid)
        flood.wait()
    assert [(done.returncode, done.stderr) for done in answers] == [(0, "")] * 5
    assert all(done.stdout.startswith("node ") for done in answers)


def test_a_many_line_request_to_601_nodes_is_a_usage_error(node):
    # PS goes to each node separately, each under its own reply type
    # pid | k << 22, and k = 512 would not fit the C int of a message type.
    # --nodes stops at the DVK's node ids before that; tests/host/test_cli.py
    # checks the reply-type bound behind it.
    done = dvsctl(node, "--timeout", "2", "--nodes", "0-600", "ps")
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert node.log.count(lambda e: e.get("event") == "request_sent") == 0


def test_a_reply_type_beyond_a_c_int_is_answered_under_the_pid(node):
    client = os.getpid()
    replies = sysv_ipc.MessageQueue(node.reply_key, max_message_size=8192)
    request = {
        "op": "request",
        "client": client,
        "cseq": 3,
        "reply_type": client | 600 << 22,
        "rqst_type": 2,  # GETDVSINFO
        "destinations": [],
    }
    sysv_ipc.MessageQueue(node.request_key).send(
        msgpack.packb(request, use_bin_type=True), type=1
    )
    chunk, _ = _receive_within(replies, client, 10)
    answer = msgpack.unpackb(chunk[8:], raw=False)
    assert answer["rcode"] == -1001
    assert "reply_type" in answer["error"]
    assert node.log.count(lambda e: e.get("event") == "client_serve_failed") == 0


def _receive_within(queue: sysv_ipc.MessageQueue, mtype: int, seconds: float):
    give_up = time.monotonic() + seconds
    while True:
        try:
            return queue.receive(block=False, type=mtype)
        except sysv_ipc.BusyError:
            if time.monotonic() > give_up:
                raise AssertionError(f"nothing arrived for type {mtype}") from None
            time.sleep(0.01)


@pytest.mark.parametrize("pid", [2**31, 2**63 - 1])
def test_kill_huge_pid_is_a_clear_error(node, pid):
    done = dvsctl(node, "--json", "call", "KILL", f"pid={pid}", 'signal="0"')
    assert "INTERNAL" not in done.stdout + done.stderr
    assert "OverflowError" not in done.stdout + done.stderr


def test_call_with_an_integer_beyond_64_bits_is_a_usage_error(node):
    done = dvsctl(node, "call", "KILL", "pid=99999999999999999999", 'signal="0"')
    assert "Traceback" not in done.stderr
    assert done.returncode == 2


@pytest.mark.parametrize("signal", ["\uff19", " 9", "9\n"])
def test_kill_signal_spelling_is_strict(node, signal):
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        dvsctl(
            node, "call", "KILL", f"pid={victim.pid}", f"signal={json.dumps(signal)}"
        )
        # Sent or not, the signal left dvsd before dvsctl returned.
        with pytest.raises(subprocess.TimeoutExpired):
            victim.wait(2)
    finally:
        victim.kill()
        victim.wait()


V1_CPU = Path("/sys/fs/cgroup/cpu")
V1_BLKIO = Path("/sys/fs/cgroup/blkio")


def v1_cgroup(root: Path, tmp_path: Path) -> str:
    if not (root / "cgroup.procs").exists() or not os.access(root, os.W_OK):
        pytest.skip(f"needs a writable cgroup v1 hierarchy at {root}")
    name = f"dvsd-abuse2-{tmp_path.name}"[:60]
    (root / name).mkdir(exist_ok=True)
    return name


def test_cgcpu_refused_request_changes_nothing(node, tmp_path):
    name = v1_cgroup(V1_CPU, tmp_path)
    try:
        done = dvsctl(node, "cgroup", "cpu", f"/{name}", "--period", "100000")
        assert done.returncode == 0, done.stdout + done.stderr
        done = dvsctl(
            node,
            "cgroup",
            "cpu",
            f"/{name}",
            "--period",
            "500000",
            "--quota",
            "99999999999999999999",
        )
        # refused before anything is sent: beyond the kernel's quota range
        assert done.returncode == 2, done.stdout + done.stderr
        assert "quota must be 'max' or microseconds in 1000.." in done.stderr
        period = (V1_CPU / name / "cpu.cfs_period_us").read_text().strip()
        assert period == "100000"
    finally:
        (V1_CPU / name).rmdir()


def test_cgcpu_kernel_refusal_undoes_the_earlier_writes(node, tmp_path):
    # A child may not have more CPU bandwidth than its parent: the kernel
    # refuses the quota only when it is written, after the period was.
    parent = v1_cgroup(V1_CPU, tmp_path)
    child = f"{parent}/child"
    (V1_CPU / child).mkdir()
    try:
        (V1_CPU / parent / "cpu.cfs_quota_us").write_text("10000")  # 0.1 CPU
        done = dvsctl(
            node,
            "cgroup",
            "cpu",
            f"/{child}",
            "--period",
            "500000",
            "--quota",
            "200000",  # 0.4 CPU: more than the parent allows
        )
        assert done.returncode == 1, done.stdout + done.stderr
        period = (V1_CPU / child / "cpu.cfs_period_us").read_text().strip()
        assert period == "100000"  # the period written first was restored
        quota = (V1_CPU / child / "cpu.cfs_quota_us").read_text().strip()
        assert quota == "-1"
    finally:
        (V1_CPU / child).rmdir()
        (V1_CPU / parent / "cpu.cfs_quota_us").write_text("-1")
        (V1_CPU / parent).rmdir()


def test_cgio_rate_beyond_64_bits_is_refused(node, tmp_path):
    name = v1_cgroup(V1_BLKIO, tmp_path)
    try:
        done = dvsctl(
            node,
            "cgroup",
            "io",
            f"/{name}",
            "--device",
            "7:0",
            "--wbps",
            "99999999999999999999999",
        )
        assert done.returncode != 0, done.stdout
    finally:
        (V1_BLKIO / name).rmdir()
