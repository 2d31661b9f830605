"""The file pam_python loads: ``auth required pam_python.so /path/to/pam_entry.py``.

pam_python compiles this file from source on every login (no .pyc), so it only
finds the package and hands over to ``pam_twofa.pamface``. Under a C host
(sshd, pamtester) PYTHONPATH is ignored, so the package is found from this
file's real location: a source checkout, or the installed package when this
file is reached through the symlink in the PAM module directory.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT = os.path.dirname(_PACKAGE_DIR)


def _face() -> ModuleType:
    if sys.path[:1] != [_ROOT]:
        sys.path.insert(0, _ROOT)
    from pam_twofa import pamface

    return pamface


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> Any:
    try:
        face = _face()
    except BaseException:  # the package cannot load: deny, never let in
        return pamh.PAM_AUTH_ERR
    return face.authenticate(pamh, flags, argv)


# The other entries decide nothing, so they load nothing: sshd runs setcred in a
# second PAM handle, which is a second interpreter start on every login.


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> Any:
    return pamh.PAM_SUCCESS  # no credentials of our own to set


def pam_sm_acct_mgmt(pamh: Any, flags: int, argv: list[str]) -> Any:
    return pamh.PAM_IGNORE  # account checks belong to other modules


def pam_sm_chauthtok(pamh: Any, flags: int, argv: list[str]) -> Any:
    return pamh.PAM_IGNORE  # passwords belong to other modules


def pam_sm_open_session(pamh: Any, flags: int, argv: list[str]) -> Any:
    return pamh.PAM_IGNORE


def pam_sm_close_session(pamh: Any, flags: int, argv: list[str]) -> Any:
    return pamh.PAM_IGNORE
