"""Who the user is, from the system's user database (NSS).

Only the user's own groups are looked up (``os.getgrouplist``), never every
group on the system: a policy listing 10,000 groups costs the same as one.
"""

from __future__ import annotations

import os

from pam_twofa.record import Record


class Account(Record):
    """A user known to NSS, with the names of every group it belongs to."""

    name: str
    uid: int
    gid: int
    home: str
    groups: frozenset[str]


def lookup(name: str) -> Account | None:
    """The account called ``name``, or None when NSS does not know it."""
    import grp
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except (KeyError, ValueError, OverflowError):
        return None
    try:
        gids = os.getgrouplist(name, pw.pw_gid)
    except OSError:
        gids = [pw.pw_gid]
    groups = set()
    for gid in gids:
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except (KeyError, OverflowError):
            continue
    return Account(
        name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, home=pw.pw_dir, groups=frozenset(groups)
    )


def root_names() -> list[str]:
    """Every account with uid 0 (root, and any toor-like alias), in NSS order.

    The policy treats each as root (``MandatoryPolicy.requires``); ``twofa-admin
    status`` lists them when there is more than one. Enumerates the user
    database: for admin commands only, never a login.
    """
    import pwd

    names: list[str] = []
    for pw in pwd.getpwall():
        if pw.pw_uid == 0 and pw.pw_name not in names:
            names.append(pw.pw_name)
    return names
