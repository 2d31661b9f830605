"""A tiny pam_python module: the harness's self-test (not part of pam_twofa).

It asks "Verification code: " (echo off) and succeeds when the answer equals ``expect=``
(default 123456).  It sends one syslog datagram to ``log_socket=`` describing what it
saw: user, uids, the groups nss_wrapper reports, PAM_RHOST and the result.  ``burst=N``
sends N extra datagrams first (to check the harness drains while the host runs).

It runs in pam_python's embedded interpreter (Debian's Python 3.11) under a C host,
so it uses the standard library only.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import traceback
from typing import Any

AUTHPRIV_INFO = 10 * 8 + 6
AUTHPRIV_ERR = 10 * 8 + 3
TAG = "fixture_module"


def _options(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for arg in argv[1:]:  # argv[0] is the module path
        key, _, value = arg.partition("=")
        opts[key] = value
    return opts


def _send(path: str | None, pri: int, message: str) -> None:
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"<{pri}>{TAG}[{os.getpid()}]: {message}".encode(), path)


def _group_names(user: str) -> str:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return "?"
    names = []
    for gid in os.getgrouplist(user, entry.pw_gid):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    return ",".join(sorted(names))


def _authenticate(pamh: Any, opts: dict[str, str]) -> int:
    log_socket = opts.get("log_socket")
    for i in range(int(opts.get("burst", "0"))):
        _send(log_socket, AUTHPRIV_INFO, f"burst {i}")
    user = pamh.get_user(None)
    try:
        msg = pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, "Verification code: ")
        answer = pamh.conversation(msg).resp
    except pamh.exception as exc:
        _send(log_socket, AUTHPRIV_ERR, f"user={user} conversation failed: {exc.pam_result}")
        return int(exc.pam_result)
    ok = answer == opts.get("expect", "123456")
    _send(
        log_socket,
        AUTHPRIV_INFO,
        f"user={user} uid={os.getuid()} euid={os.geteuid()} groups={_group_names(user)} "
        f"rhost={pamh.rhost} result={'ok' if ok else 'fail'}",
    )
    return int(pamh.PAM_SUCCESS if ok else pamh.PAM_AUTH_ERR)


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> int:
    opts = _options(argv)
    try:
        return _authenticate(pamh, opts)
    except Exception:  # a traceback escaping pam_python would be lost without /dev/log
        _send(opts.get("log_socket"), AUTHPRIV_ERR, traceback.format_exc())
        return int(pamh.PAM_SERVICE_ERR)


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_SUCCESS)


def pam_sm_acct_mgmt(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_SUCCESS)
