"""Issue 11 finding 8: the enrollment service's connection slots.

The real service as root; clients are other uids. The flood comes from uids with no
passwd entry (as a subordinate-uid range gives any user with ``newuidmap``): each
connects and sends nothing. Before the fix every such connection took one of the 64
slots and a real user got ``busy``; now the caller is identified when the connection
is accepted and a uid without a passwd entry is refused before it takes a slot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.enroll_support import Service, client, running_service, service_world
from tests.harness.pamenv import PamEnv
from tests.test_enroll_service import raw_request

FLOOD_BASE = 100000  # a subuid-like range: no passwd entries
# Connects one socket per uid (seteuid per connect: SO_PEERCRED records the euid),
# says "ready", holds them until stdin closes, then prints what each got back.
FLOOD = r"""
import json, os, socket, sys
path, base, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for uid in range(base, base + count):
    os.seteuid(uid)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
    finally:
        os.seteuid(0)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
answers = []
for s in socks:
    s.settimeout(10)
    try:
        s.shutdown(socket.SHUT_WR)
        answers.append(json.loads(s.makefile().readline() or "null"))
    except (OSError, ValueError) as exc:
        answers.append({"client-error": type(exc).__name__})
print(json.dumps(answers))
"""


@pytest.fixture
def world(pam_env: PamEnv) -> PamEnv:
    return service_world(pam_env, FLOOD_BASE)


class Flood:
    def __init__(self, service: Service, base: int, count: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FLOOD, str(service.socket),
                                      str(base), str(count)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "ready\n", (line, self.proc.stderr.read() if self.proc.stderr else "")

    def answers(self) -> list[dict[str, object]]:
        out, err = self.proc.communicate("", timeout=60)
        assert self.proc.returncode == 0, err
        result: list[dict[str, object]] = json.loads(out)
        return result


def test_passwdless_uids_cannot_make_the_service_busy(world: PamEnv) -> None:
    alice, bob = world.users["alice"], world.users["bob"]
    with running_service(world) as service:
        flood = Flood(service, FLOOD_BASE, 80)  # more than the 64 slots
        time.sleep(0.5)  # the service has accepted them all
        for user in (alice, bob):  # each real user is still served at once
            answer = raw_request(service, b'{"op": "status"}\n', uid=user.uid)
            assert answer["ok"] is True, answer
        shown = client(world, service, ["status", "--json"], alice.uid)  # the real client
        assert shown.returncode == 0 and json.loads(shown.stdout)["user"] == "alice", shown
        answers = flood.answers()
        assert len(answers) == 80
        assert all(a == {"ok": False, "error": "unknown-user",
                         "message": f"uid {FLOOD_BASE + i} has no passwd entry"}
                   for i, a in enumerate(answers)), answers[:3]
        assert service.alive()


def test_one_uid_cannot_fill_the_slots(world: PamEnv) -> None:
    """A known uid holds at most one slot; its extra connections are refused at once."""
    alice, bob = world.users["alice"], world.users["bob"]
    held = ("import socket,sys,time\nsocks=[]\n"
            "for _ in range(80):\n"
            "    s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); socks.append(s)\n"
            "print('ready',flush=True)\nsys.stdin.read()\n"
            "import json\nout=[]\n"
            "for s in socks:\n"
            "    s.settimeout(10); s.shutdown(socket.SHUT_WR)\n"
            "    out.append(json.loads(s.makefile().readline() or 'null'))\n"
            "print(json.dumps(out))\n")
    with running_service(world) as service:
        proc = subprocess.Popen(["setpriv", f"--reuid={alice.uid}", f"--regid={alice.uid}",
                                 "--clear-groups", "/usr/bin/python3", "-c", held,
                                 str(service.socket)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.3)
        answer = raw_request(service, b'{"op": "status"}\n', uid=bob.uid)
        assert answer["ok"] is True and answer["user"] == "bob", answer
        # the real client, refused when accepted (before it sent its request), says why
        again = client(world, service, ["status"], alice.uid)
        assert again.returncode == 1, again
        assert again.stderr == ("twofa-enroll: error: another request of yours is in "
                                "progress\n"), again.stderr
        out, err = proc.communicate("", timeout=60)
        assert proc.returncode == 0, err
        answers = json.loads(out)
        # the first connection held alice's one slot: at EOF (or after 5 s) it got its
        # answer; every other was refused when accepted
        assert answers[0]["error"] in ("bad-request", "timeout"), answers[0]
        assert answers[1:] == [{"ok": False, "error": "busy",
                                "message": "another request of yours is in progress"}] * 79
