"""Real dvsd processes whose event scripts record what they were told.

Every node runs ``record.sh <file>`` for every membership event; the script
appends its ``DVSD_*`` environment and the JSON it read on stdin to the
node's own file.  Tests wait for the daemon's ``script_done`` log line (the
runner writes it after the script exited), then read the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import Node

RECORDER = """\
#!/bin/sh
# Appends one record per run: the DVSD_* variables, then stdin.
out="$1"
{
    echo BEGIN
    env | grep '^DVSD_' | sort
    printf 'STDIN '
    cat
    echo END
} >> "$out"
"""

EVENTS = ("join", "leave", "disconnect", "partition", "merge")


def write_recorder(directory: Path) -> Path:
    script = directory / "record.sh"
    script.write_text(RECORDER)
    script.chmod(0o755)
    return script


SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scripts" / "dvsd-event.sh"


def scripts_section(
    recorder: Path, record_file: Path, sample_log: Path, nodes: int
) -> str:
    """Every event runs the recorder, then the sample script of examples/."""
    entries = ", ".join(
        json.dumps(entry)
        for entry in (f"{recorder} {record_file}", f"{SAMPLE} {sample_log}")
    )
    lines = ["[scripts]"] + [f"{event} = [{entries}]" for event in EVENTS]
    lines += ["timeout = 20", "[cluster]", f"nodes = {list(range(nodes))}"]
    return "\n".join(lines) + "\n"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Each run's variables (``DVSD_*`` keys) plus ``stdin`` (the parsed JSON)."""
    if not path.exists():
        return []
    records = []
    for block in path.read_text().split("BEGIN\n")[1:]:
        body, _, _ = block.rpartition("END\n")
        record: dict[str, Any] = {}
        for line in body.splitlines():
            if line.startswith("STDIN "):
                record["stdin"] = json.loads(line[len("STDIN ") :])
            elif "=" in line:
                name, value = line.split("=", 1)
                record[name] = value
        records.append(record)
    return records


class ScriptedNode(Node):
    """A harness node whose scripts record into ``record_file``."""

    def __init__(self, workdir: Path, node_id: int, gcs: dict, size: int, **kw):
        self.record_file = workdir / f"events.node{node_id}"
        self.sample_log = workdir / f"sample.node{node_id}.log"
        recorder = write_recorder(workdir)
        super().__init__(
            workdir,
            node_id,
            gcs,
            extra=scripts_section(recorder, self.record_file, self.sample_log, size),
            **kw,
        )

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.record_file)

    def wait_script(self, event: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``count`` runs of ``event``'s scripts finished on this node.

        A run is the recorder then the sample script; the sample's log line
        comes last.
        """
        done = 0

        def finished(entry: dict) -> bool:
            nonlocal done
            if (
                entry.get("event") in ("script_done", "script_failed")
                and entry.get("membership_event") == event
                and str(SAMPLE) in entry.get("script", "")
            ):
                done += 1
            return done >= count

        self.log.wait_for(finished, timeout)

    def script_failures(self) -> list[dict]:
        return [e for e in self.log.events if e.get("event") == "script_failed"]


def start_scripted_cluster(tmp_path: Path, daemon, size: int = 3) -> list[ScriptedNode]:
    nodes = [
        ScriptedNode(
            tmp_path,
            node_id,
            {"transport": "spread", "daemon": daemon.tcp_address},
            size,
        )
        for node_id in range(size)
    ]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_view(size)
        # every node's own JOIN script ran (the first event of its life)
        node.wait_script("join")
    return nodes


@pytest.fixture(params=["standin", "real"])
def scripted_cluster(request, tmp_path, spread_daemon_factory):
    """Three recording dvsd nodes on one Spread daemon (stand-in, then real)."""
    daemon = spread_daemon_factory.start(request.param)
    nodes = start_scripted_cluster(tmp_path, daemon)
    yield nodes
    for node in nodes:
        node.cleanup()


@pytest.fixture
def scripted_standin_cluster(tmp_path, spread_daemon_factory):
    """Three recording nodes on the stand-in, with its partition control."""
    daemon = spread_daemon_factory.start("standin")
    nodes = start_scripted_cluster(tmp_path, daemon)
    yield daemon, nodes
    for node in nodes:
        node.cleanup()
