"""Who the users are, from the system's user database (NSS), for the tools.

A login needs one account (``login.lookup``, re-exported here with ``Account``);
the admin commands also need every uid-0 name (``root_names``).
"""

from __future__ import annotations

from pam_twofa.login import Account as Account
from pam_twofa.login import lookup as lookup


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
