"""The C guard's cost, or rather its saving (README "Security notes"): a bare pam_python
transaction with and without ``pam_twofa_guard.so`` before it, and authenticate vs
setcred behind it.

The guard starts the interpreter without ``site`` and pam_python never finalises an
interpreter it did not start, so authenticate gets cheaper; and in a handle of its own
(sshd's setcred) the guard's ``success=1`` jumps over pam_python: no interpreter at all.
In one handle (su, sudo) Linux-PAM replays authenticate's results for setcred, so
pam_python's setcred runs there, in the interpreter already up.
"""

from __future__ import annotations

import subprocess
from typing import Any

from bench import pamrun
from bench.world import FLOOR_MODULE, PASSWORD, REPO, Contender, World, code_now

BASE = "floor: authenticate"


def contenders(world: World) -> list[Contender]:
    env = world.env
    env.service("floor", module=FLOOR_MODULE)
    env.service("floor-guard", module=FLOOR_MODULE, guard=True)
    env.service("twofa")
    env.service("twofa-guard", guard=True)
    with_code = lambda: [PASSWORD, code_now()]  # noqa: E731

    def nothing() -> list[str]:
        return []

    reset = lambda: world.reset_twofa("alice")  # noqa: E731
    C = Contender
    return [
        C(BASE, "floor", with_code),
        C("floor + guard: authenticate", "floor-guard", with_code),
        C("floor: setcred (own handle, as sshd)", "floor", nothing, op="setcred"),
        C("floor + guard: setcred (own handle, as sshd)", "floor-guard", nothing, op="setcred"),
        C("floor: authenticate setcred (one handle, as su)", "floor", with_code,
          op="authenticate setcred"),
        C("floor + guard: authenticate setcred (one handle)", "floor-guard", with_code,
          op="authenticate setcred"),
        C("pam-twofa TOTP: authenticate", "twofa", with_code, reset),
        C("pam-twofa TOTP + guard: authenticate", "twofa-guard", with_code, reset),
    ]


def run(n: int) -> list[dict[str, Any]]:
    subprocess.run(["make", "--no-print-directory", "-s", "guard"], cwd=REPO, check=True)
    world = World()
    try:
        world.add_user("alice")
        cpu: dict[str, list[float]] = {}
        times = pamrun.series(world, contenders(world), n, cpu=cpu)
        return pamrun.summarize(times, BASE, cpu)
    finally:
        world.close()
