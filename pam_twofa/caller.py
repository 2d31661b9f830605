"""Who runs this login: a process with no privilege beyond its caller's.

A screen locker (i3lock, swaylock, xscreensaver) runs PAM as the logged-in user,
who cannot read the root-only state: the module cannot decide. Such a process is
recognised by all of: real, effective and saved uid equal and not 0; the same for
the gids; no effective capabilities; and a state directory it cannot use (not its
own, or no permission to look). Anything else (a setuid program, root, a broken
state directory of its own) is not this case.

What it then gets is the face's decision (``unprivileged=`` module argument): by
default an internal error as before, with its own log reason; with
``unprivileged=ignore`` PAM_IGNORE, but only when the user being authenticated is
the caller itself. A daemon that runs PAM as its own service uid to check *other*
users (a mail server) never gets PAM_IGNORE that way.
"""

from __future__ import annotations

import os


def _no_capabilities() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16) == 0
    except (OSError, ValueError, IndexError):
        return False
    return False


def unprivileged(state_dir: str) -> bool:
    """True when this process has no privilege beyond its caller's and the state
    directory is out of its reach."""
    ruid, euid, suid = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    if euid == 0 or not ruid == euid == suid or not rgid == egid == sgid:
        return False
    if not _no_capabilities():
        return False
    try:
        st = os.lstat(state_dir)
    except PermissionError:
        return True
    except OSError:
        return False
    return st.st_uid != euid
