"""The benchmark floor: a pam_python module that imports nothing.

It asks for a code through the PAM conversation, like a TOTP module, and
accepts any answer: what is left is the cost of pam_python itself (interpreter
start, compiling this file) that every pam_python module pays.
"""


def pam_sm_authenticate(pamh, flags, argv):  # type: ignore[no-untyped-def]
    pamh.conversation(pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, "Verification code: "))
    return pamh.PAM_SUCCESS


def pam_sm_setcred(pamh, flags, argv):  # type: ignore[no-untyped-def]
    return pamh.PAM_SUCCESS


def pam_sm_acct_mgmt(pamh, flags, argv):  # type: ignore[no-untyped-def]
    return pamh.PAM_SUCCESS
