"""Scale: a pam-twofa login with 10 vs 100,000 enrolled users in the store, and with
a policy listing 10 vs 10,000 users and groups.

Each variant is its own PAM service with its own state dir and policy file (the
compiled policy cache lives in the state dir, keyed by the policy file). The big
store is written directly in the store's JSON format: 100,000 files in seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.world import SECRET, Contender, World, code_now
from pam_twofa import fastjson
from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.state import UserState
from tests.harness.pamenv import ENTRY_MODULE

BIG_STORE = 100_000
BIG_POLICY = 10_000


def fill_store(state_dir: Path, users: list[str]) -> float:
    """Write enrolled users straight in the store's format; seconds taken."""
    start = time.perf_counter()
    FileStore(Paths(state_dir=str(state_dir)), Clock()).users()  # 0700 dirs
    users_dir = state_dir / "users"
    for name in users:
        state = UserState(name)
        state.enrolled = True
        state.secret = SECRET
        state.enrolled_at = time.time()
        data = fastjson.dumps(state.to_plain()).encode() + b"\n"
        fd = os.open(users_dir / f"{name}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return time.perf_counter() - start


def policy_text(listed: int) -> str:
    """scope selected with ``listed`` names, half users, half groups."""
    users = ", ".join(f"u{i}" for i in range(listed // 2))
    groups = ", ".join(f"g{i}" for i in range(listed - listed // 2))
    return (f"mandatory:\n  scope: selected\n  users: [{users}]\n  groups: [{groups}]\n"
            "lockout:\n  max_failures: 1000\n")


def add_scale_services(world: World,
                       user: str = "alice") -> tuple[list[Contender], dict[str, float]]:
    """Three services: small/small (the baseline), big store, big policy."""
    root = world.tmp / "scale"
    root.mkdir(exist_ok=True)
    small = [user, *(f"user{i:06d}" for i in range(9))]
    big = [user, *(f"user{i:06d}" for i in range(BIG_STORE - 1))]
    setup: dict[str, float] = {}
    variants = {
        "scale: 10 users, 10 listed": (small, 10),
        "scale: 100,000 users, 10 listed": (big, 10),
        "scale: 10 users, 10,000 listed": (small, BIG_POLICY),
    }
    contenders = []
    for n, (label, (users, listed)) in enumerate(variants.items()):
        state_dir = root / f"state{n}"
        state_dir.mkdir(mode=0o700)
        setup[label] = round(fill_store(state_dir, users), 2)
        policy = root / f"policy{n}.yaml"
        policy.write_text(policy_text(listed))
        service = f"scale{n}"
        world.env.service_raw(service, world._stack(
            f"auth required pam_python.so {ENTRY_MODULE} policy={policy} "
            f"state_dir={state_dir} log_socket={world.env.log_socket}"))
        store = FileStore(Paths(state_dir=str(state_dir), policy=str(policy)), Clock())

        def reset(store: FileStore = store) -> None:
            with store.update(user) as st:
                st.last_step = -1

        contenders.append(Contender(label, service, lambda: ["secret", code_now()], reset))
    return contenders, setup
