"""``doctor``'s host checks: state directory, policy, sockets, clock, mail.

Each reads through the project's own code (fsutil's owner/mode rule, policyfile's
strict loader, clockstatus, hostchecks' log-socket probe, the mailer), so doctor
and a login judge the same things the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from pam_twofa.errors import InsecureState, PolicyError
from pam_twofa.rollout.findings import ERROR, INFO, WARNING, Finding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.paths import Paths
    from pam_twofa.policy import Policy

SUBDIRS = ("users", "locks", "cache")


def check_state(state_dir: str) -> list[Finding]:
    """Owner (the euid: root on a host) and modes (0700 dirs, 0600 files), no symlinks."""
    from pam_twofa import fsutil

    try:
        os.lstat(state_dir)
    except FileNotFoundError:
        return [Finding("state-dir", INFO, f"state directory {state_dir} does not exist yet; "
                        "the first login or twofa-admin command creates it", "", state_dir)]
    out = []
    todo = [(state_dir, True)]
    for sub in SUBDIRS:
        path = f"{state_dir}/{sub}"
        if os.path.lexists(path):
            todo.append((path, True))
            if os.path.isdir(path) and not os.path.islink(path):
                with contextlib.suppress(OSError):  # its own check below names it
                    todo += [(f"{path}/{n}", False) for n in sorted(os.listdir(path))]
    euid = os.geteuid()
    for path, is_dir in todo:
        try:
            st = os.lstat(path)
        except OSError as exc:
            out.append(Finding("state-dir", ERROR, f"cannot read {path}: {exc.strerror}",
                               "run doctor as root", path))
            continue
        mode = "0700" if is_dir else "0600"
        fix = f"chown {euid} {path}; chmod {mode} {path}"
        if stat.S_ISLNK(st.st_mode):
            kind = "directory" if is_dir else "file"
            out.append(Finding("state-dir", ERROR, f"{path} is a symbolic link: the module "
                               "refuses it", f"replace it by a real {kind}", path))
            continue
        try:
            fsutil.check_owner_mode(st, "state directory" if is_dir else "state file", path,
                                    dir_=is_dir or stat.S_ISDIR(st.st_mode))
        except InsecureState as exc:
            out.append(Finding("state-dir", ERROR, f"{exc.message}: logins fail "
                               "(reason=insecure-state)", fix, path))
    return out


def check_policy(paths: Paths) -> tuple[list[Finding], Policy | None]:
    """Strict, like 'twofa-admin policy check': every error with file:line."""
    from pam_twofa import policyfile

    try:
        policy = policyfile.load(paths, use_cache=False)
    except PolicyError as exc:
        errors: list[PolicyError] = getattr(exc, "errors", [exc])
        return [Finding("policy", ERROR, f"{e.problem} (logins keep the last valid policy, "
                        "if there was one)", "fix the line; 'twofa-admin policy check' "
                        "lists every error", e.path or paths.policy, e.line)
                for e in errors], None
    out = []
    if not os.path.exists(paths.policy):
        out.append(Finding("policy", INFO, f"no policy file {paths.policy}: the built-in "
                           "defaults apply", "", paths.policy))
    if policy.mandatory.scope == "none":
        out.append(Finding("policy-scope", INFO, "mandatory.scope is none: nobody is "
                           "required; only enrolled users are asked for a code",
                           "set mandatory.scope when the users are enrolled "
                           "('twofa-admin report' shows who would be required)", paths.policy))
    return out, policy


def check_log_socket(path: str) -> list[Finding]:
    from pam_twofa.rollout.hostchecks import log_socket_problem

    problem = log_socket_problem(path)
    if problem is None:
        return []
    return [Finding("log-socket", ERROR, f"{problem}: pam-twofa's log lines are lost",
                    "start a syslog daemon (rsyslog, or systemd-journald), or give the "
                    "module log_socket=PATH", path)]


def check_enroll_socket(path: str) -> list[Finding]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
            return []
        except OSError as exc:
            why = exc.strerror or str(exc)
    return [Finding("enroll-socket", WARNING, f"nothing listens on the enrollment socket "
                    f"{path} ({why}): users cannot run twofa-enroll",
                    "systemctl enable --now pam-twofa-enroll.socket (without systemd: run "
                    "twofa-enroll-service under a supervisor)", path)]


def check_clock(paths: Paths, now: float) -> list[Finding]:
    from pam_twofa import clockstatus as cs

    status = cs.read(paths.clock_status)
    fix = "systemctl enable --now pam-twofa-clockcheck.timer (or twofa-clockcheck now)"
    where = paths.clock_status
    if status is None:
        return [Finding("clock", INFO, "no clock check has run yet (codes fail when the "
                        "clock drifts)", fix, where)]
    if now - status.checked_at > cs.STALE_SECONDS:
        return [Finding("clock", WARNING, f"the last clock check is stale: "
                        f"{status.describe()}; the hourly timer is not running", fix, where)]
    if status.verdict == cs.OFFSET:
        return [Finding("clock", ERROR, f"clock: {status.describe()}: codes are refused",
                        "timedatectl set-ntp true (or fix chrony/ntpd)", where)]
    if status.verdict in (cs.SYNC_OFF, cs.NO_ANSWER):
        return [Finding("clock", WARNING, f"clock: {status.describe()}",
                        "timedatectl set-ntp true; let the check reach an NTP server", where)]
    return []


def raw_policy(path: str) -> dict[str, Any]:
    """The policy file as plain YAML, for keys this version may not know yet."""
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except Exception:  # unreadable or not YAML: 'policy' reports that, not this
        return {}
    return data if isinstance(data, dict) else {}


def check_mail(policy: Policy | None, address: str) -> list[Finding]:
    """``--mail ADDRESS``: one test message through the policy's smtp settings."""
    from pam_twofa.mail import mailer

    if policy is None:
        return [Finding("mail", ERROR, "no test mail: the policy is invalid", "")]
    if not mailer.configured(policy.smtp):
        return [Finding("mail", ERROR, "no test mail: smtp is not configured in the policy "
                        "(emergency codes and notices cannot be sent)",
                        "set smtp.host (or smtp.provider) and smtp.sender")]
    server = mailer.server(policy.smtp)
    try:
        mailer.send(server, address, "pam-twofa test mail (twofa-admin doctor)",
                    f"This is a test mail from pam-twofa on {mailer.hostname()}.\n")
    except mailer.MailError as exc:
        return [Finding("mail", ERROR, f"test mail via {server.host}:{server.port} failed: "
                        f"{exc.kind}: {exc.message}", "see 'twofa-admin mail-test'")]
    return [Finding("mail", INFO, f"test mail sent to {address} via "
                    f"{server.host}:{server.port}", "")]
