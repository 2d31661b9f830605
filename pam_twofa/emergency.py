"""Emergency codes by mail: the way in for a user who cannot reach the authenticator.

NIST SP 800-63B treats an emailed code as a recovery path, so a code here is
random (``code_digits`` digits from ``secrets``), stored only as a salted hash,
valid ``ttl_seconds``, accepted once, voided by the next send, and rate-limited
(``max_sends_per_hour`` per user, counted in ``state.sends``). Wrong answers count
toward the same progressive lockout as wrong TOTP codes, and a used code mails a
notification.

The hash is PBKDF2-HMAC-SHA256 with a 16-byte random salt and ``ITERATIONS``
rounds: a short-lived, single-use, rate-limited code needs no memory-hard hash,
and ~10 ms keeps the check cheap for the login while a copied state file is
still no code list. Loaded only when a user answers ``email`` at the prompt (the
core decides whether to offer it, without this module or the mailer). The store
makes the code (``Store.emergency_reserve``: ``reserve`` here for the file store;
on the fleet the database makes it, keeps a MAC and counts the sends fleet-wide);
it goes out through the notifier the core was given (mail in production).
"""

from __future__ import annotations

from pam_twofa import verify
from pam_twofa.errors import SendLimit
from pam_twofa.login import (
    Decision,
    Outcome,
    email_held_until,
    format_time,
    lock_notices,
    offers_email,
)
from pam_twofa.record import Record
from pam_twofa.verify import Verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.login import Clock, Notifier, Request
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store

ITERATIONS = 20_000
HOUR = 3600.0
EMERGENCY_PROMPT = "Emergency code: "
MSG_LIMIT = ("Too many codes were mailed to you in the last hour; try again later "
             "or contact your administrator.")
MSG_NOT_ENROLLED = "Two-factor authentication is not set up for your account."
MSG_NO_EMAIL = "No verified security email is set for your account."
MSG_EMPTY = "No emergency code was entered."
MSG_BAD = "Wrong or expired emergency code."


class Issued(Record):
    """A new emergency code for the caller to mail: made by the store (the file store:
    ``new_code``; the fleet: the database), which keeps only a hash or MAC of it."""

    code: str
    address: str
    ttl: int  # seconds it is valid from now (the fleet's own setting there)


def refused(reason: str, until: float | None = None) -> Verdict:
    """A refusal to mail a code, worded by its token (both backends): ``not-enrolled``,
    ``no-email``, ``email-changed`` (held ``until``), ``mail-send-limit``."""
    if reason == "email-changed":
        return Verdict(reason, held_message(until or 0.0))
    message = {"not-enrolled": MSG_NOT_ENROLLED, "no-email": MSG_NO_EMAIL,
               SendLimit.reason: MSG_LIMIT}[reason]
    return Verdict(reason, message)


def offered(policy: Policy, state: UserState, now: float | None = None) -> bool:
    """Whether the code prompt offers an emergency code to this user (``now``: also
    check the hold after a change of address)."""
    if now is not None and held_until(policy, state, now) is not None:
        return False
    return offers_email(policy, bool(state.email))


def held_until(policy: Policy, state: UserState, now: float) -> float | None:
    """When emergency codes come back after the user changed the address, or None
    (``login.email_held_until``)."""
    return email_held_until(policy, state.email_changed_at, now)


def held_message(until: float) -> str:
    return (f"Emergency codes by mail are paused until {format_time(until)}: your security "
            "email was changed.")


def new_code(digits: int) -> str:
    import secrets

    return f"{secrets.randbelow(10**digits):0{digits}d}"


def _digest(code: str, salt: bytes, iterations: int) -> bytes:
    import hashlib

    return hashlib.pbkdf2_hmac("sha256", code.encode(), salt, iterations)


def seal(code: str, now: float, ttl: float, **extra: Any) -> dict[str, Any]:
    """What is stored of a code: salt, hash, expiry (never the code)."""
    import os

    salt = os.urandom(16)
    return {"salt": salt.hex(), "hash": _digest(code, salt, ITERATIONS).hex(),
            "iterations": ITERATIONS, "sent": now, "expires": now + ttl, **extra}


def normalize(answer: str) -> str:
    """Codes may be typed with spaces or dashes."""
    return "".join(c for c in answer if c not in " -\t")


def matches(sealed: dict[str, Any] | None, answer: str, now: float) -> bool:
    """Whether ``answer`` is the sealed code and it has not expired (constant time)."""
    import hmac

    if not sealed:
        return False
    try:
        if not now < float(sealed["expires"]):
            return False
        salt = bytes.fromhex(sealed["salt"])
        want = bytes.fromhex(sealed["hash"])
        rounds = int(sealed["iterations"])
    except (KeyError, TypeError, ValueError):
        return False
    code = normalize(answer)
    if not code.isdigit() or not 1 <= rounds <= 10_000_000:
        return False
    return hmac.compare_digest(_digest(code, salt, rounds), want)


def reserve_send(state: UserState, policy: Policy, now: float, kind: str = "emergency",
                 ) -> None:
    """Count one mail against the hourly limit of its ``kind`` (``emergency`` in
    ``state.sends``, ``verify`` in ``state.verify_sends``), or raise ``SendLimit``.

    Separate budgets: naming a new address must not use up the emergency codes a
    user may need within the same hour, nor the other way round.
    """
    field = "verify_sends" if kind == "verify" else "sends"
    recent = [t for t in getattr(state, field) if now - t < HOUR and t <= now + 60]
    if len(recent) >= policy.emergency.max_sends_per_hour:
        setattr(state, field, recent)
        raise SendLimit(MSG_LIMIT)
    setattr(state, field, [*recent, now])


def reserve(st: UserState, policy: Policy, now: float) -> Verdict | Issued:
    """Under the user's lock: count one mail and make a new code, sealed as the one
    live emergency code (voiding the last); or the refusal (locked, suspended, no
    address, held after a change of address, hourly limit)."""
    refusal = _refusal(st, now) or _held(st, policy, now)
    if refusal is not None:
        return refusal
    try:
        reserve_send(st, policy, now)
    except SendLimit as exc:
        return refused(exc.reason)
    code = new_code(policy.emergency.code_digits)
    st.emergency = seal(code, now, policy.emergency.ttl_seconds)
    return Issued(code=code, address=st.email or "", ttl=policy.emergency.ttl_seconds)


def login(request: Request, user: str, policy: Policy, store: Store, clock: Clock,
          notifier: Notifier) -> Decision:
    """The user answered ``email``: mail a new code, then ask for it."""
    conv = request.conversation
    now = clock.now()
    issued = store.emergency_reserve(user, policy, now)  # the store makes the code
    if isinstance(issued, Verdict):  # no conversation under the lock: said after it
        conv.error(issued.message or "")
        return Decision(outcome=Outcome.REFUSE, reason=issued.reason)
    minutes = max(1, issued.ttl // 60)
    sent, said = notifier.send_code(user, issued.address, issued.code, minutes=minutes,
                                    client=request.client(), now=now)
    if not sent:
        conv.error(f"The emergency code could not be mailed ({said.removeprefix('mail-')}); "
                   "try your authenticator or contact your administrator.")
        return Decision(outcome=Outcome.REFUSE, reason=said)
    conv.info(f"An emergency code was sent to {said}; "
              f"it is valid for {minutes} minutes.")
    answer = conv.ask(EMERGENCY_PROMPT)
    if answer is None:
        return Decision(outcome=Outcome.REFUSE, reason="no-answer")
    return check(request, user, answer, policy, store, clock, notifier)


def _refusal(st: UserState, now: float) -> Verdict | None:
    if not st.enrolled:
        return refused("not-enrolled")
    refusal = verify.refusal(st, now)
    if refusal is not None:
        return refusal
    if not st.email:
        return refused("no-email")
    return None


def _held(st: UserState, policy: Policy, now: float) -> Verdict | None:
    until = held_until(policy, st, now)
    return None if until is None else refused("email-changed", until)


def check_sealed(st: UserState, answer: str, policy: Policy, now: float) -> Verdict:
    """Under the user's lock: ``emergency-code`` when ``answer`` is the live code (used
    up), else a refusal or a counted failure (``bad-emergency-code``)."""
    refusal = _refusal(st, now)
    if refusal is not None:
        return refusal
    if not answer.strip():  # no guess: not counted (as at the code prompt)
        return Verdict("empty", MSG_EMPTY)
    if matches(st.emergency, answer, now):
        st.emergency = None  # accepted once
        verify.record_success(st, now)
        verdict = Verdict("emergency-code")
        verdict.email = st.email
        return verdict
    if st.emergency and not now < float(st.emergency.get("expires", 0)):
        st.emergency = None  # expired: no use keeping it
    return verify.failed(st, policy, now, MSG_BAD, "bad-emergency-code")


def check(request: Request, user: str, answer: str, policy: Policy, store: Store,
          clock: Clock, notifier: Notifier) -> Decision:
    """Verify an emergency code under the user's lock: once only, counted on failure."""
    now = clock.now()
    verdict = store.emergency_check(user, answer, policy, now)
    if verdict.reason == "emergency-code":
        sent = notifier.notice("emergency_code_used", user, verdict.email or "",
                               client=request.client(), now=now)
        return Decision(outcome=Outcome.SUCCESS, reason="emergency-code",
                        fields=(("notified", "yes" if sent else "no"),))
    request.conversation.error(verdict.message or "")
    if verdict.reason != "bad-emergency-code":
        return Decision(outcome=Outcome.REFUSE, reason=verdict.reason)
    fields = verdict.fields + lock_notices(request, user, verdict, notifier, now)
    return Decision(outcome=Outcome.REFUSE, reason=verdict.reason, fields=fields)
