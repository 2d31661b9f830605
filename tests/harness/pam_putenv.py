"""A tiny pam_python module for tests: copies the named variables of the host's
environment into the PAM environment, as sshd puts SSH_CONNECTION there.

``auth required pam_python.so pam_putenv.py SSH_CONNECTION`` before the module under
test: pamtester has no way to set a PAM environment variable, pam_env only sets them
in setcred (after authenticate), and pam_wrapper's pam_set_items sets items only.
A variable absent from the host's environment is left unset. Standard library only
(it runs in pam_python's embedded interpreter).
"""

from __future__ import annotations

import os
from typing import Any


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> int:
    for name in argv[1:]:  # argv[0] is the module path
        value = os.environ.get(name)
        if value is not None:
            pamh.env[name] = value
    return int(pamh.PAM_IGNORE)


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)
