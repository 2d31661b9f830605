"""fail2ban cannot be steered by local users (issue 11, finding 9).

Any local user could get any address banned: the filter matched the journal on
SYSLOG_FACILITY=10, which the sender chooses (`logger -p authpriv.notice -t sshd
"pam_twofa(sshd:auth): user=bob rhost=198.51.100.9 result=refused reason=bad-code"`
five times reached maxretry). Here a real journald (tests/journal_support.py)
records the module's real lines, sent from a process named sshd running as root
(pamtester through the real module), and forged ones from uid 65534 (logger, a
program named sshd, and the native protocol with forged "_UID=0"); fail2ban-regex
reads that journal with the shipped filter's journal match, as the jail's
backend = systemd does. Only the module's refusals count, by <ADDR>.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.pamenv import ENTRY_MODULE, PAM_MATRIX, PAM_SET_ITEMS, PamEnv, oathtool
from tests.harness.procs import SYSTEM_PATH
from tests.harness.wait import wait_fresh_step
from tests.journal_support import Journald
from tests.pam_support import enroll, wrong_code

REPO = Path(__file__).resolve().parent.parent
RHOST = "203.0.113.7"
FORGED = "198.51.100.9"
NOBODY = 65534
FORGED_LINE = (f"pam_twofa(sshd:auth): user=bob rhost={FORGED} result=refused "
               "reason=bad-code failures=1")
# A program named sshd run by uid 65534: journald records _COMM=sshd for it too, so
# only _UID tells it apart. It also tries the native protocol with forged trusted
# fields, and stays alive so that journald reads its /proc entry.
FORGER = f"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for _ in range(5):
    s.sendto(b"<85>Dec  1 10:00:00 sshd[1]: {FORGED_LINE}", sys.argv[1])
native = (b"_UID=0\\n_COMM=sshd\\n_PID=1\\nSYSLOG_FACILITY=10\\nSYSLOG_IDENTIFIER=sshd\\n"
          b"PRIORITY=5\\nMESSAGE={FORGED_LINE} native=1\\n")
for _ in range(5):
    s.sendto(native, sys.argv[2])
time.sleep(0.5)
"""


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Journald, Path]]:
    """A journald that recorded real and forged lines, stopped (flushed) when yielded."""
    jd = Journald()
    root = tmp_path_factory.mktemp("f2b")
    env = PamEnv(root)
    try:
        env.add_user("alice")
        env.add_user("bob")
        env.write_policy("lockout:\n  max_failures: 10\n")
        args = f"policy={env.policy} state_dir={env.state_dir} log_socket={jd.dev_log}"
        env.service_raw("twofa-f2b", [
            f"auth required {PAM_SET_ITEMS}",
            f"auth required {PAM_MATRIX} passdb={env.passdb}",
            f"auth required pam_python.so {ENTRY_MODULE} {args}",
            # keeps the sending process alive while journald reads /proc/PID/comm
            "auth optional pam_exec.so quiet /bin/sleep 0.3",
            "account required pam_permit.so",
        ])
        secret = enroll(env, "alice")
        bin_dir = root / "bin"
        bin_dir.mkdir()
        (bin_dir / "sshd").symlink_to("/usr/bin/pamtester")  # comm "sshd", uid 0
        wait_fresh_step()
        code = oathtool(secret)
        rcs = []
        for answer in (code, code, wrong_code(secret), wrong_code(secret)):
            res = subprocess.run(
                [str(bin_dir / "sshd"), "twofa-f2b", "alice", "authenticate"],
                input=f"secret\n{answer}\n", capture_output=True, text=True, timeout=30,
                env={**env.wrapper_env(), "PAM_RHOST": RHOST}, check=False)
            rcs.append(res.returncode)
        assert rcs[0] == 0 and all(rc != 0 for rc in rcs[1:]), rcs
        # the attack, as the issue reproduced it, and with a program named sshd
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        for _ in range(5):
            subprocess.run([*drop, "logger", "--socket", str(jd.dev_log), "-p",
                            "authpriv.notice", "-t", "sshd", FORGED_LINE],
                           env={"PATH": SYSTEM_PATH}, check=True, timeout=30)
        forger = jd.work / "forger"
        forger.mkdir(mode=0o755)
        (forger / "sshd").symlink_to("/usr/bin/python3")
        subprocess.run([*drop, str(forger / "sshd"), "-c", FORGER, str(jd.dev_log),
                        str(jd.native)], env={"PATH": SYSTEM_PATH}, check=True, timeout=30)
        jd.stop()
        yield jd, root
    finally:
        env.close()
        jd.close()


def fail2ban_conf(tmp: Path) -> Path:
    """/etc/fail2ban with the shipped filter and jail added (a copy)."""
    conf = tmp / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    shutil.copy(REPO / "etc/fail2ban/filter.d/pam-twofa.conf", conf / "filter.d")
    shutil.copy(REPO / "etc/fail2ban/jail.d/pam-twofa.conf", conf / "jail.d")
    return conf


def regex(conf: Path, jd: Journald, output: str, *extra: str) -> list[str]:
    files = ",".join(str(f) for f in jd.journal_files())
    res = subprocess.run(
        ["fail2ban-regex", "-c", str(conf), "-o", output, *extra,
         f"systemd-journal[journalfiles={files}]", "pam-twofa"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
    assert res.returncode == 0, res.stdout + res.stderr
    return [line for line in res.stdout.splitlines() if line.strip()]


def test_journald_recorded_who_sent_each_line(journal: tuple[Journald, Path]) -> None:
    jd, _ = journal
    ours = [e for e in jd.entries() if "pam_twofa(" in e.get("MESSAGE", "")]
    real = [e for e in ours if f"rhost={RHOST}" in e["MESSAGE"]]
    forged = [e for e in ours if f"rhost={FORGED}" in e["MESSAGE"]]
    assert len(real) == 4 and len(forged) == 15, ours
    for e in real:
        assert (e["_UID"], e.get("_COMM"), e["SYSLOG_FACILITY"]) == ("0", "sshd", "10"), e
    for e in forged:  # the facility and tag are the sender's choice; _UID is not
        assert (e["_UID"], e["SYSLOG_FACILITY"], e["SYSLOG_IDENTIFIER"]) == (
            str(NOBODY), "10", "sshd"), e
    named_sshd = [e for e in forged if e.get("_COMM") == "sshd"]
    assert len(named_sshd) == 10, forged  # only _UID tells these from sshd's


def test_only_root_sshds_refusals_are_counted(journal: tuple[Journald, Path],
                                              tmp_path: Path) -> None:
    jd, _ = journal
    conf = fail2ban_conf(tmp_path)
    assert regex(conf, jd, "ip") == [RHOST] * 3  # replay, bad-code, bad-code
    lines = regex(conf, jd, "msg")
    assert len(lines) == 3 and all("result=refused" in line for line in lines), lines
    assert not [line for line in lines if FORGED in line]
    jail = subprocess.run(["fail2ban-client", "-c", str(conf), "-d"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    assert ("'addjournalmatch', '_UID=0', '_COMM=sshd', '_COMM=sshd-session', "
            "'SYSLOG_FACILITY=10'") in jail, jail


def test_the_old_facility_match_let_any_user_ban_any_address(
        journal: tuple[Journald, Path], tmp_path: Path) -> None:
    """The attack is real in this journal: matching on the facility alone counts the
    forged lines (fifteen of them, maxretry is 5)."""
    jd, _ = journal
    conf = fail2ban_conf(tmp_path)
    hosts = regex(conf, jd, "ip", "-m", "SYSLOG_FACILITY=10")
    assert hosts.count(FORGED) == 15 and hosts.count(RHOST) == 3, hosts


def test_a_dns_name_in_rhost_is_never_banned(tmp_path: Path) -> None:
    """<ADDR>: a name (whose DNS an attacker may control) is not resolved to a third
    party's address; "localhost" stands for it here (<HOST> resolved it to 127.0.0.1)."""
    conf = fail2ban_conf(tmp_path)
    log = tmp_path / "auth.log"
    log.write_text(
        "Dec  1 10:00:00 host sshd[7]: pam_twofa(sshd:auth): user=alice "
        "rhost=localhost result=refused reason=bad-code failures=1\n"
        f"Dec  1 10:00:01 host sshd[7]: pam_twofa(sshd:auth): user=alice "
        f"rhost={RHOST} result=refused reason=bad-code failures=2\n")
    res = subprocess.run(["fail2ban-regex", "-c", str(conf), "-o", "ip", str(log),
                          "pam-twofa"], capture_output=True, text=True, timeout=120,
                         check=True, env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
    assert res.stdout.split() == [RHOST], res.stdout


if os.geteuid() != 0:  # journald in a mount namespace and setpriv need root (CI is root)
    raise RuntimeError("tests/test_fail2ban_ssh.py needs root")
