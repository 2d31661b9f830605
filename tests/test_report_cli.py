"""Issue 15 item 3: ``twofa-admin report`` over NSS (nss_wrapper), with 1,000 users and
50 groups, and over a directory that does not enumerate (sssd with enumerate = false,
played by a small NSS module nss_wrapper loads beside its files)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pam_twofa import enrollment, totp
from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.policy import Policy
from pam_twofa.policyfile import load
from tests.harness.pamenv import REPO_ROOT, PamEnv

NSS_MODULE_C = REPO_ROOT / "tests" / "fixtures" / "nss_noenum.c"
DAY = 86400
N_USERS, N_GROUPS = 1000, 50


def sandbox(env: PamEnv) -> None:
    """root and toor (uid 0); user0000..user0999 (uid 5000+i); grp00..grp49 (gid 6000+j).
    The first 500 are members of grp(i % 50) by the group file, the others by their
    primary group only."""
    passwd = ["root:x:0:0:root:/root:/bin/sh", "toor:x:0:0:toor:/root:/bin/sh"]
    members: dict[int, list[str]] = {j: [] for j in range(N_GROUPS)}
    for i in range(N_USERS):
        name, j = f"user{i:04d}", i % N_GROUPS
        gid = 6000 + j if i >= 500 else 5000 + i
        passwd.append(f"{name}:x:{5000 + i}:{gid}:{name}:/nonexistent:/bin/sh")
        if i < 500:
            members[j].append(name)
    group = ["root:x:0:"] + [f"user{i:04d}:x:{5000 + i}:" for i in range(500)]
    group += [f"grp{j:02d}:x:{6000 + j}:{','.join(members[j])}" for j in range(N_GROUPS)]
    group.append("wheel:x:10:user0007")
    env.passwd.write_text("\n".join(passwd) + "\n")
    env.group.write_text("\n".join(group) + "\n")


def store_of(env: PamEnv) -> tuple[FileStore, Policy]:
    paths = Paths(policy=str(env.policy), policy_explicit=True, state_dir=str(env.state_dir))
    return FileStore(paths, Clock()), load(paths, use_cache=False)


def report(env: PamEnv, extra_env: dict[str, str] | None = None) -> dict[str, object]:
    done = env.admin("report", "--json", env=extra_env)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


SELECTED = """\
mandatory:
  scope: selected
  groups: [grp00, grp01, grp02, grp03, grp04, grp05, grp06, grp07, grp08, grp09]
  users: [user0999]
  exempt_users: [user0000]
enrollment: {grace_days: 7}
"""


def test_report_counts_on_1000_users_and_50_groups(pam_env: PamEnv) -> None:
    sandbox(pam_env)
    pam_env.write_policy(SELECTED)
    store, policy = store_of(pam_env)
    now = time.time()
    # required: i % 50 < 10 (100 by the group file, 100 by the primary group), user0999,
    # minus user0000 (exempt): 200
    required = [f"user{i:04d}" for i in range(1, N_USERS) if i % N_GROUPS < 10] + ["user0999"]
    assert len(required) == 200
    enrolled, grace, over, locked = required[:150], required[150:170], required[170:180], \
        required[3]
    for name in enrolled:
        with store.update(name) as st:
            enrollment.activate(st, totp.random_secret(), policy, now - 10 * DAY)
            st.last_success = now - 3600
    with store.update(locked) as st:
        st.locked_until = now + 3600
    for name in grace:
        with store.update(name) as st:
            st.first_seen = now - DAY
    for name in over:
        with store.update(name) as st:
            st.first_seen = now - 30 * DAY
    with store.update("user0011") as st:  # grp11: not required, but enrolled
        enrollment.activate(st, totp.random_secret(), policy, now)

    result = report(pam_env)
    rows = {r["user"]: r for r in result["users"]}  # type: ignore[attr-defined]
    assert sorted(rows) == sorted(required)
    assert result["summary"] == {  # type: ignore[comparison-overlap]
        "required": 200, "enrolled": 150, "in_grace": 20, "grace_not_started": 20,
        "inline": 0, "blocked": 11, "locked": 1, "suspended": 0,
        "not_required_with_state": 1}
    assert result["enumeration"] == {"complete": True, "notes": []}
    assert rows["user0001"]["status"] == "enrolled"
    assert rows["user0001"]["last_login"] == pytest.approx(now - 3600)
    assert rows["user0001"]["required_by"] == "group grp01"  # by the group file
    assert rows["user0501"]["required_by"] == "group grp01"  # by the primary group
    assert rows["user0999"]["required_by"] == "mandatory.users"
    assert rows[locked]["locked_until"] == pytest.approx(now + 3600) and rows[locked]["blocked"]
    g = rows[grace[0]]
    assert g["status"] == "grace" and g["grace_until"] == pytest.approx(now + 6 * DAY)
    assert rows[over[0]]["status"] == "grace-over" and rows[over[0]]["blocked"]
    assert rows[required[-2]]["status"] == "grace-not-started"
    assert "user0000" not in rows and "user0011" not in rows

    text = pam_env.admin("report").stdout
    assert text.rstrip().endswith(
        "required 200, enrolled 150 (75%), in grace 20, blocked 11, not seen yet 20")
    assert "locked until" in text and "grace over: refused" in text


def test_report_time_on_1000_users(pam_env: PamEnv) -> None:
    """Not a timed assertion (bench/ has the figure): the run must simply work at size."""
    sandbox(pam_env)
    pam_env.write_policy("mandatory: {scope: all}\n")
    started = time.monotonic()
    result = report(pam_env)
    seconds = time.monotonic() - started
    print(f"twofa-admin report, {N_USERS + 2} users, {N_GROUPS + 1} groups: {seconds:.3f} s")
    assert result["summary"]["required"] == N_USERS + 2  # type: ignore[index]


def test_admins_scope_counts_every_uid_0_account(pam_env: PamEnv) -> None:
    sandbox(pam_env)
    pam_env.write_policy("mandatory: {scope: admins}\n")
    rows = {r["user"]: r for r in report(pam_env)["users"]}  # type: ignore[attr-defined]
    assert sorted(rows) == ["root", "toor", "user0007"]
    assert rows["toor"]["required_by"] == "uid 0"
    assert rows["user0007"]["required_by"] == "group wheel"


@pytest.fixture(scope="module")
def nss_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nss") / "libnss_fake.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(out),
                    str(NSS_MODULE_C)], check=True)
    return out


def test_directory_without_enumeration_is_named_and_its_members_reported(
        pam_env: PamEnv, nss_module: Path) -> None:
    sandbox(pam_env)
    pam_env.write_policy("mandatory:\n  scope: selected\n  groups: [ldapadmins, grp00, "
                         "nosuchgroup]\n  users: [ghost]\n")
    extra = {"NSS_WRAPPER_MODULE_SO_PATH": str(nss_module),
             "NSS_WRAPPER_MODULE_FN_PREFIX": "fake"}
    result = report(pam_env, extra)
    rows = {r["user"]: r for r in result["users"]}  # type: ignore[attr-defined]
    assert rows["ldapalice"]["uid"] == 7777
    assert rows["ldapalice"]["required_by"] == "group ldapadmins"
    assert len(rows) == 1 + 20  # ldapalice; grp00: 10 members by file, 10 by primary gid
    enumeration = result["enumeration"]
    assert enumeration["complete"] is False  # type: ignore[index]
    notes = "\n".join(enumeration["notes"])  # type: ignore[index]
    assert notes.startswith("NSS enumeration is incomplete")
    assert "group ldapadmins is known to NSS but not enumerated" in notes
    assert "group nosuchgroup (named in the policy) is unknown to NSS" in notes
    assert "ghost (listed in mandatory.users) is unknown to NSS" in notes
    text = pam_env.admin("report", env=extra).stdout
    assert "Note: NSS enumeration is incomplete" in text


def test_enumerating_directory_gives_no_note(pam_env: PamEnv) -> None:
    """The same policy without the module: every group listed, nothing to say but the
    unknown names (so the note above comes from the missing enumeration alone)."""
    sandbox(pam_env)
    pam_env.write_policy("mandatory:\n  scope: selected\n  groups: [grp00]\n")
    result = report(pam_env)
    assert result["enumeration"] == {"complete": True, "notes": []}
    assert result["summary"]["required"] == 20  # type: ignore[index]
