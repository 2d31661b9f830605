"""First-login enrollment inside the login (policy ``enrollment.mode: inline``).

An in-scope user who is not enrolled is shown a QR code, the account and the
secret key (PAM_TEXT_INFO), then asked for the code from the app. A right code
activates the secret and lets this login through; anything else refuses it.
Each login makes its own secret and keeps it in memory only: it reaches the
state only when the code from it is right, so a secret shown to an abandoned
login (or to someone else who has the password) can never enroll or log in.

Loaded only from that branch of ``core._not_enrolled``: ``qrcode`` (Debian's
python3-qrcode under pam_python) and ``hashlib`` stay off enrolled users' logins.
"""

from __future__ import annotations

from pam_twofa import enrollment
from pam_twofa.login import Decision, Outcome, format_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.login import Clock, LoginView, Request
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store

PROMPT = "Enter the code from your app to finish enrollment: "
MSG_INTRO = ("Two-factor authentication is required for your account. Scan this QR code "
             "with your authenticator app, or add the account and secret key by hand:")
MSG_MEANWHILE = ("Two-factor authentication was just set up for your account; "
                 "log in again.")
MSG_DONE = ("Two-factor authentication is now on. Recovery codes (each works once instead "
            "of a code; keep them safe, they are not shown again):")


def enroll(request: Request, user: str, policy: Policy, store: Store, clock: Clock) -> Decision:
    """Enroll ``user`` within this login; SUCCESS only when the new secret is proven.

    The secret is this login's own: made here, kept in memory, written to state only
    once its code proves it (issue 11: a shared pending secret let whoever had the
    password read the secret the victim's next login would enroll). The state is read
    without the lock and written under it; the conversation never runs under it.
    """
    conv = request.conversation
    if request.code is not None:  # the code came with the password: nothing to enroll with
        conv.error("Two-factor authentication must be set up first: log in interactively.")
        return Decision(outcome=Outcome.REFUSE, reason="enrollment-required")
    refused = _refusal(store.view(user, clock.now()), clock.now())
    if refused is not None:
        conv.error(refused[1])
        return refused[0]
    from pam_twofa import totp

    secret = totp.random_secret()
    _show(request, user, secret, policy)
    answer = conv.ask(PROMPT)
    if answer is None:
        return Decision(outcome=Outcome.REFUSE, reason="no-answer")
    result, codes = store.enroll_inline(user, secret, answer, policy, clock.now())
    if result == "enrolled-meanwhile":
        conv.error(MSG_MEANWHILE)
        return Decision(outcome=Outcome.REFUSE, reason=result)
    if result != "ok":
        conv.error(f"Enrollment failed: {enrollment.REFUSAL_MESSAGES[result]}.")
        return Decision(outcome=Outcome.REFUSE, reason=result,
                        fields=(("enrollment", "inline"),))
    from pam_twofa.recovery import groups

    conv.info(MSG_DONE + "\n" + "\n".join(f"  {groups(code)}" for code in codes))
    return Decision(outcome=Outcome.SUCCESS, reason="enrolled", fields=(("enrollment", "inline"),))


def confirm(st: UserState, secret: str, answer: str, policy: Policy,
            now: float) -> tuple[str, list[str]]:
    """Under the user's lock: activate this login's ``secret`` if ``answer`` is its
    code, with a fresh set of recovery codes (returned in clear, shown once)."""
    if st.enrolled:
        return "enrolled-meanwhile", []
    result = enrollment.confirm_secret(st, secret, answer, policy, now)
    if result != "ok":
        return result, []
    from pam_twofa import recovery

    return result, recovery.replace(st)


def _refusal(view: LoginView | None, now: float) -> tuple[Decision, str] | None:
    """Why this login cannot enroll now (a lock, or enrolled by another session)."""
    if view is None:
        return None
    if view.enrolled:  # the next login asks for a code
        return Decision(outcome=Outcome.REFUSE, reason="enrolled-meanwhile"), MSG_MEANWHILE
    until = view.locked_until if view.locked_until > now else None
    if until is not None:
        return (Decision(outcome=Outcome.REFUSE, reason="locked",
                         fields=(("locked_until", int(until)),)),
                f"Too many wrong codes: locked until {format_time(until)}.")
    return None


def _show(request: Request, user: str, secret: str, policy: Policy) -> None:
    conv = request.conversation
    uri = enrollment.uri(user, secret, policy)
    conv.info(MSG_INTRO)
    try:
        from pam_twofa.enroll import qr

        conv.info(qr.terminal(uri))
    except ImportError:  # python3-qrcode missing: the key can still be typed in
        pass
    spaced = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    conv.info(f"Account:    {enrollment.label(user, policy)}\n"
              f"Issuer:     {enrollment.issuer(policy)}\n"
              f"Secret key: {spaced}")
