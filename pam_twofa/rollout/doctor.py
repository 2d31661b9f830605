"""``twofa-admin doctor``: every check of a host's set-up, in one list of findings.

``Layout`` says where the host's files are: the live host's (/etc/pam.d,
/etc/ssh/sshd_config, the policy and state the admin options name), or the same
tree under ``--root DIR`` (fixtures, an image, a container's root), or any file
named by its own option (the ``make demo`` sandbox). On a live host, sshd's
effective global values come from ``sshd -T`` when it runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pam_twofa.rollout import doctor_fleet, doctor_host, doctor_pam, doctor_sshd, sshdconf
from pam_twofa.rollout.findings import INFO, Finding, rank
from pam_twofa.rollout.sshdconf import under

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.paths import Paths

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Layout:
    paths: Paths  # policy, state_dir, log_socket, socket (enrollment)
    pam_dir: str = "/etc/pam.d"
    sshd_config: str = "/etc/ssh/sshd_config"
    ssh_service: str = "sshd"  # the PAM service name sshd uses
    root: str = ""  # "" on the live host

    @classmethod
    def make(cls, paths: Paths, *, root: str = "", pam_dir: str | None = None,
             sshd_config: str | None = None, ssh_service: str = "sshd",
             enroll_socket: str | None = None,
             explicit: frozenset[str] = frozenset()) -> Layout:
        """Defaults under ``root``; a path in ``explicit`` (or given here) stays as is."""
        def pick(name: str, value: str) -> str:
            return value if name in explicit or not root else under(root, value)

        paths = paths.replace(
            policy=pick("policy", paths.policy), state_dir=pick("state_dir", paths.state_dir),
            log_socket=pick("log_socket", paths.log_socket),
            socket=enroll_socket or pick("socket", paths.socket))
        return cls(paths, pam_dir or under(root, "/etc/pam.d"),
                   sshd_config or under(root, "/etc/ssh/sshd_config"), ssh_service, root)


def run(layout: Layout, now: float, mail: str | None = None) -> list[Finding]:
    """Every finding, worst first."""
    found: list[Finding] = []
    found += doctor_pam.check(layout.pam_dir, layout.ssh_service)
    stack = doctor_pam.ssh_stack(layout.pam_dir, layout.ssh_service)
    found += _sshd(layout, stack)
    found += doctor_sshd.check_path(layout.root, stack)
    found += doctor_host.check_state(layout.paths.state_dir)
    policy_findings, policy = doctor_host.check_policy(layout.paths)
    found += policy_findings
    found += doctor_host.check_log_socket(layout.paths.log_socket)
    found += doctor_host.check_enroll_socket(layout.paths.socket)
    found += doctor_host.check_clock(layout.paths, now)
    found += doctor_fleet.check(layout.paths.policy, layout.root)
    if mail:
        found += doctor_host.check_mail(policy, mail)
    return sorted(found, key=rank)


def _sshd(layout: Layout, stack: doctor_pam.SshStack) -> list[Finding]:
    if not os.path.exists(layout.sshd_config):
        if stack.enabled:
            return [Finding("sshd-config", INFO, f"no {layout.sshd_config}: sshd checks "
                            "skipped", "give the file with --sshd-config", layout.sshd_config)]
        return []
    conf = sshdconf.read(layout.sshd_config, layout.root)
    extra = []
    if not layout.root and stack.enabled and os.access(SSHD, os.X_OK):
        live = sshdconf.effective(SSHD, layout.sshd_config)
        if isinstance(live, dict):
            conf.effective = live
        else:
            extra.append(Finding("sshd-t", INFO, f"sshd -T failed, the files are read "
                                 f"instead: {live}", "", layout.sshd_config))
    return extra + doctor_sshd.check(conf, stack, layout.ssh_service)
