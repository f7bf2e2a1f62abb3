"""The whole request path on one machine: dvsctl -> SysV queues -> dvsd -> back."""

from __future__ import annotations

import concurrent.futures
import json
import os

import pytest
from tests.e2e.harness import environment


def test_status_names_transport_kernel_and_view(single_node):
    rc, status = single_node.dvsctl_json("status")
    assert rc == 0
    assert status["node_id"] == 0
    assert status["transport"] == "single-node"
    assert status["gcs"] == "connected"
    assert status["kernel"] == "emulated"
    assert status["view"]["members"] == [0]


def test_dvs_nodes_answers_from_the_node(single_node):
    rc, result = single_node.dvsctl_json("dvs", "nodes")
    assert rc == 0
    assert [reply["node"] for reply in result["replies"]] == [0]
    (node,) = result["replies"][0]["items"][0]["nodes"]
    assert (node["node"], node["state"], node["member"]) == (0, "up", True)


def test_unknown_request_type_gets_a_clear_error(single_node):
    rc, result = single_node.dvsctl_json("call", "4242")
    assert rc == 1
    (reply,) = result["replies"]
    assert reply["rcode"] == -1001  # BAD_REQUEST
    assert "unknown request type 4242" in reply["error"]


def test_bad_parameters_are_refused_before_sending(single_node):
    done = single_node.dvsctl("call", "TESTECHO", "size=-5")
    assert done.returncode == 2
    assert "size must be in 0..200000, got -5" in done.stderr
    assert single_node.log.count(lambda e: e.get("event") == "request_sent") == 0


def test_hundred_kilobyte_reply_survives_the_queue_split(single_node):
    rc, result = single_node.dvsctl_json("call", "TESTECHO", "size=100000")
    assert rc == 0
    item = result["replies"][0]["items"][0]
    blob = item["blob"]
    # bytes come back base64-marked in JSON; check them byte for byte
    import base64

    data = base64.b64decode(blob["data"]) if blob["encoding"] == "base64" else blob
    pattern = bytes((0 * 7 + i) % 251 for i in range(251))
    assert data == (pattern * 400)[:100000]


def test_fifty_concurrent_clients_each_get_their_own_reply(single_node):
    sizes = [1000 + 37 * index for index in range(50)]

    def ask(size: int) -> tuple[int, int, int]:
        rc, result = single_node.dvsctl_json("call", "TESTECHO", f"size={size}")
        import base64

        blob = result["replies"][0]["items"][0]["blob"]
        return size, rc, len(base64.b64decode(blob["data"]))

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, sizes))
    assert all(rc == 0 for _, rc, _ in answers)
    assert [(size, length) for size, _, length in answers] == [(s, s) for s in sizes]


def test_request_timeout_reports_the_node_missing(single_node):
    rc, result = single_node.dvsctl_json(
        "--timeout", "0.5", "call", "TESTSLOW", "seconds=3"
    )
    assert rc == 4
    assert result["missing"] == [{"node": 0, "reason": "timeout"}]


def test_dvsctl_without_daemon_exits_3(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "none.toml"
    config.write_text("[msgq]\nrequest_key = 12345671\nreply_key = 12345672\n")
    done = subprocess.run(
        [sys.executable, "-m", "dvsd.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
    )
    assert done.returncode == 3
    assert "is dvsd running?" in done.stderr


@pytest.mark.parametrize(
    ("config_text", "code", "words"),
    [
        (
            "[msgq]\nrequest_key = 12345673\nreply_key = 12345674\n",
            3,
            "is dvsd running?",
        ),
        ("node_id = 99\n", 2, "node_id must be in 0..31"),
    ],
)
def test_json_output_is_json_even_when_nothing_was_asked(
    tmp_path, config_text, code, words
):
    import subprocess
    import sys

    config = tmp_path / "given.toml"
    config.write_text(config_text)
    done = subprocess.run(
        [sys.executable, "-m", "dvsd.cli", "--config", str(config), "--json"]
        + ["dvs", "info"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
    )
    assert done.returncode == code, done.stderr
    answer = json.loads(done.stdout)
    assert answer["exit_code"] == code
    assert words in answer["error"] and words in done.stderr


def test_bad_config_names_the_key(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "bad.toml"
    config.write_text('[gcs]\ntransport = "carrier-pigeon"\n')
    done = subprocess.run(
        [sys.executable, "-m", "dvsd", "--config", str(config)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
    )
    assert done.returncode == 2
    assert 'gcs.transport must be one of "spread", "single-node"' in done.stderr
    assert os.path.basename(str(config)) in done.stderr


def test_dvsd_killed_mid_request_makes_dvsctl_exit_3_promptly(single_node):
    import subprocess
    import sys
    import time

    from tests.e2e.harness import REPO

    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dvsd.cli",
            "--config",
            str(single_node.config_path),
            "--timeout",
            "60",
            "call",
            "TESTSLOW",
            "seconds=30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        cwd=REPO,
    )
    single_node.log.wait_for(lambda e: e.get("event") == "testslow_waiting")
    killed_at = time.monotonic()
    single_node.kill()
    _, stderr = client.communicate(timeout=20)
    assert client.returncode == 3
    assert "exited while the request was in flight" in stderr
    assert time.monotonic() - killed_at < 5


def test_init_replies_name_what_their_code_is(single_node):
    done = single_node.dvsctl("dvs", "init")
    assert (done.returncode, done.stdout) == (0, "node 0: ok (local node 0)\n")
    # DCINIT answers the dcid, whatever the local node is
    done = single_node.dvsctl("dc", "init", "5", "five")
    assert (done.returncode, done.stdout) == (0, "node 0: ok (dcid 5)\n")
