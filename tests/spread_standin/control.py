"""Drive a running stand-in through its control socket (JSON lines).

Requests and replies are one JSON object per line. Every reply has ``ok``;
failures carry ``error``, a sentence naming what was wrong. A request returns
once the stand-in has queued every message the change produced, so a test may
read them straight away.

    {"op": "partition", "sets": [["node.1"], ["node.2", "node.3"]]}
    {"op": "merge"}
    {"op": "status"}
    {"op": "kill", "name": "node.2"}

``partition`` and ``merge`` take ``"force_transition": true`` to send a
TRANSITION_MESS before every changed group's REG_MEMB, even on sides that lost
nobody (by default only sides that lost members get one, as on a real daemon).
"""

from __future__ import annotations

import json
import socket
import time


class StandinControlError(RuntimeError):
    """The stand-in refused a control request; the message says why."""


class StandinControl:
    """A synchronous client of one stand-in's control socket."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, **request) -> dict:
        """Send one request and return the reply; raise on ``ok: false``."""
        deadline = time.monotonic() + self.timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise StandinControlError(
                        f"stand-in closed the control socket before answering {request}"
                    )
                reply += chunk
        answer = json.loads(reply)
        if not answer.get("ok"):
            raise StandinControlError(answer.get("error", f"refused: {answer}"))
        return answer

    def partition(
        self, sets: list[list[str]], *, force_transition: bool = False
    ) -> dict:
        """Split the sessions by private name; unlisted names join the first set."""
        return self.request(
            op="partition", sets=sets, force_transition=force_transition
        )

    def merge(self, *, force_transition: bool = False) -> dict:
        """Put every session back into one daemon membership."""
        return self.request(op="merge", force_transition=force_transition)

    def status(self) -> dict:
        """Sessions, their groups, and the current components."""
        return self.request(op="status")["status"]

    def kill(self, private_name: str) -> None:
        """Kill one session as the daemon would (peers see DISCONNECT)."""
        self.request(op="kill", name=private_name)
