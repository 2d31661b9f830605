"""What ``twofa-admin status`` warns about: problems that fail silently at login.

A broken policy file does not refuse logins while a valid one was compiled before
(the last valid one stays in force), and log lines sent to a missing syslog socket
are lost without a word: both are easy to miss, so status says so.
"""

from __future__ import annotations

from pam_twofa.errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.paths import Paths


def log_socket_problem(path: str) -> str | None:
    """Why nothing can be logged through ``path``, or None when a syslog daemon listens."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except FileNotFoundError:
            return f"no syslog socket at {path}"
        except ConnectionRefusedError:
            return f"nothing listens on the syslog socket {path}"
        except OSError as exc:
            return f"cannot log to {path}: {exc.strerror or exc}"
    return None


def policy_problem(paths: Paths) -> str | None:
    """The policy file's problem as logins see it, or None."""
    from pam_twofa import policyfile
    from pam_twofa.clock import format_time

    try:
        loaded = policyfile.load_in_force(paths)
    except PolicyError as exc:
        first = getattr(exc, "errors", [exc])[0].message
        return (f"policy is invalid and no valid policy was compiled before: every login "
                f"fails as failmode says: {first}")
    if loaded.error is None:
        return None
    since = f" (valid at {format_time(loaded.since)})" if loaded.since else ""
    return (f"policy is invalid: {loaded.error}; logins use the last valid policy{since} "
            "until it is fixed (twofa-admin policy check)")


def warnings(paths: Paths) -> list[str]:
    """Every warning for ``twofa-admin status``, one line each."""
    found = [policy_problem(paths), log_socket_problem(paths.log_socket)]
    if found[1] is not None:
        found[1] += (": pam-twofa's log lines are lost; start a syslog daemon (rsyslog, "
                     "or systemd-journald) or give the module log_socket=PATH and "
                     "twofa-admin --log-socket PATH")
    return [w for w in found if w is not None]
