"""Issue 12 item 10: every syslog tag pam-twofa logs under fits 15 characters (the
kernel keeps 15 of a process name, so the service was logged as "twofa-enroll-se").
The constants, the systemd units' SyslogIdentifier=, and the lines the real
twofa-admin and the real enrollment service send."""

from __future__ import annotations

import re
from pathlib import Path

from pam_twofa import log
from pam_twofa.cli.admin.context import Admin
from pam_twofa.paths import Paths
from tests.enroll_support import running_service
from tests.harness.pamenv import PamEnv
from tests.test_enroll_service import raw_request

REPO = Path(__file__).resolve().parent.parent
TAG_RE = re.compile(r"^<\d+>\w{3} [ \d]\d \d\d:\d\d:\d\d ([^\[:]+)\[\d+\]: ")


def tag_of(line: str) -> str:
    found = TAG_RE.match(line)
    assert found, line
    return found.group(1)


def test_every_tag_fits_15_characters() -> None:
    too_long = [t for t in log.TAGS if len(t) > log.MAX_TAG]
    assert log.MAX_TAG == 15 and not too_long, too_long
    units = sorted((REPO / "systemd").glob("*.service"))
    assert units
    for unit in units:
        idents = re.findall(r"(?m)^SyslogIdentifier=(.*)$", unit.read_text())
        assert idents, f"{unit.name}: no SyslogIdentifier= (the name would be cut to 15)"
        for ident in idents:
            assert ident in log.TAGS, (unit.name, ident, log.TAGS)


def test_real_programs_log_with_their_tags(pam_env: PamEnv) -> None:
    alice = pam_env.add_user("alice")
    pam_env.allow_uid(alice.uid)
    done = pam_env.admin("enroll", "alice", "--qr", "none")
    assert done.returncode == 0, done.stderr
    pam_env._log.drain()
    # twofa-admin has no --log-socket: its audit sink, pointed at the harness socket
    Admin(Paths(state_dir=str(pam_env.state_dir), policy=str(pam_env.policy),
                log_socket=str(pam_env.log_socket))).audit("enroll", "alice")
    with running_service(pam_env) as service:  # the real service, as a process
        answer = raw_request(service, b'{"op": "disable", "code": "000000"}\n', uid=alice.uid)
        assert answer["ok"] is False
        lines = pam_env._log.drain()
    tags = {tag_of(line): line for line in lines}
    assert "twofa-admin(enroll): user=alice" in tags.get(log.TAG_ADMIN, ""), lines
    assert "pam_twofa(enroll): user=alice" in tags.get(log.TAG_ENROLL_SERVICE, ""), lines
    assert all(len(tag) <= log.MAX_TAG for tag in tags), tags
