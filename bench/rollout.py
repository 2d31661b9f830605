"""Rollout commands at size: ``twofa-admin report`` over 1,000 users and 50 groups
(nss_wrapper; 600 of them enrolled) on the file store and on the fleet store (a
throwaway PostgreSQL, one ``twofa_api.admin_report`` query), and ``twofa-admin doctor
--root`` on a copy of Debian's PAM files; wall time of a fresh process each run
(issue 15: report < 1 s)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.world import median, percentile
from pam_twofa import enrollment, totp
from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.policyfile import load
from tests.harness.pamenv import REPO_ROOT, PamEnv

USERS, GROUPS, ENROLLED = 1000, 50, 600
TARGET_S = 1.0


def sandbox(env: PamEnv) -> None:
    passwd = ["root:x:0:0:root:/root:/bin/sh"]
    members: dict[int, list[str]] = {j: [] for j in range(GROUPS)}
    for i in range(USERS):
        passwd.append(f"user{i:04d}:x:{5000 + i}:{6000 + i % GROUPS}::/nonexistent:/bin/sh")
        members[i % GROUPS].append(f"user{i:04d}")
    env.passwd.write_text("\n".join(passwd) + "\n")
    env.group.write_text("root:x:0:\n" + "".join(
        f"grp{j:02d}:x:{6000 + j}:{','.join(members[j][::2])}\n" for j in range(GROUPS)))
    env.write_policy("mandatory: {scope: all}\n")
    paths = Paths(policy=str(env.policy), policy_explicit=True, state_dir=str(env.state_dir))
    store, policy = FileStore(paths, Clock()), load(paths, use_cache=False)
    for i in range(ENROLLED):
        with store.update(f"user{i:04d}") as st:
            enrollment.activate(st, totp.random_secret(), policy, time.time())


def timed(cmd: list[str], env: dict[str, str] | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, check=False)
        out.append(time.perf_counter() - start)
        assert done.returncode in (0, 1), done.stderr
    return out


def fleet_report(env: PamEnv, tmp: Path, base: list[str], wrap: dict[str, str],
                 n: int) -> list[float]:
    """The same accounts on a fleet database (the same 600 enrolled), read through
    ``admin_dsn``: one query for every user."""
    from tests.fleet_support import ADMIN, FleetDb, prepare
    from tests.harness.pgserver import PgServer, make_template

    tpl = make_template()
    db = None
    try:
        prepare(tpl)
        db = FleetDb(PgServer(tpl))
        with db.connect().cursor() as cur:
            cur.execute("INSERT INTO twofa.users (name, enrolled, secret, first_seen) "
                        "SELECT format('user%%s', lpad(i::text, 4, '0')), i < %s, "
                        "twofa.gen_random_bytes(20), now() FROM generate_series(0, %s) AS i",
                        (ENROLLED, USERS - 1))
        policy = tmp / "fleet-policy.yaml"
        policy.write_text("mandatory: {scope: all}\nstore:\n  backend: postgresql\n"
                          f"  postgresql:\n    dsn: \"{db.server.dsn('host1')}\"\n"
                          f"    admin_dsn: \"{db.server.dsn(ADMIN)}\"\n")
        policy.chmod(0o600)
        return timed([*base, "--policy", str(policy), "--state-dir", str(env.state_dir),
                      "report", "--json"], wrap, n)
    finally:
        if db is not None:
            db.close()
        shutil.rmtree(tpl.parent, ignore_errors=True)


def run(n: int) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    try:
        env = PamEnv(tmp / "world")
        try:
            sandbox(env)
            report = ["--policy", str(env.policy), "--state-dir", str(env.state_dir)]
            base = [sys.executable, "-m", "pam_twofa.cli.admin"]
            wrap = {**env.wrapper_env(pam=False)}
            rows = [("report --json, 1,000 users / 50 groups",
                     timed([*base, *report, "report", "--json"], wrap, n))]
            rows.append(("report --json, fleet store, 1,000 users / 50 groups",
                         fleet_report(env, tmp, base, wrap, n)))
        finally:
            env.close()
        root = tmp / "host"
        shutil.copytree(REPO_ROOT / "tests" / "fixtures" / "pam.d", root / "etc" / "pam.d")
        rows.append(("doctor --root (Debian's pam.d)",
                     timed([*base, "doctor", "--root", str(root)], None, n)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [{"name": name, "n": len(v), "median_ms": round(median(v) * 1000, 1),
             "p90_ms": round(percentile(v, 90) * 1000, 1)} for name, v in rows]
