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
still no code list. Loaded only when a user answers ``email`` at the prompt.
"""

from __future__ import annotations

from pam_twofa import lockout
from pam_twofa.clock import format_time
from pam_twofa.core import MSG_SUSPENDED, Decision, Outcome
from pam_twofa.errors import SendLimit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.clock import Clock
    from pam_twofa.core import Request
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store

ITERATIONS = 20_000
HOUR = 3600.0
ANSWER = "email"  # what the user types at the code prompt to get a code
CODE_PROMPT = "Verification code (or 'email' to get one by mail): "
EMERGENCY_PROMPT = "Emergency code: "
MSG_LIMIT = ("Too many codes were mailed to you in the last hour; try again later "
             "or contact your administrator.")


def offered(policy: Policy, state: UserState, now: float | None = None) -> bool:
    """Whether the code prompt offers an emergency code to this user (``now``: also
    check the hold after a change of address)."""
    if now is not None and held_until(policy, state, now) is not None:
        return False
    return bool(policy.emergency.enabled and state.email and policy.smtp.configured)


def held_until(policy: Policy, state: UserState, now: float) -> float | None:
    """When emergency codes come back after the user changed the address, or None.

    Whoever runs code as the user and knows one TOTP code could otherwise name their
    own address and keep a way in; the hold gives the owner (told at the old address)
    ``after_email_change_hours`` to notice.
    """
    changed = state.email_changed_at
    if changed is None:
        return None
    until = changed + policy.emergency.after_email_change_hours * HOUR
    return until if now < until else None


def held_message(until: float) -> str:
    return (f"Emergency codes by mail are paused until {format_time(until)}: your security "
            "email was changed.")


def offer(request: Request, policy: Policy, state: UserState, now: float) -> bool:
    """``offered``, telling the user at the prompt when a change of address holds it."""
    if not offered(policy, state):
        return False
    until = held_until(policy, state, now)
    if until is not None:
        request.conversation.info(held_message(until))
        return False
    return True


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


def client_of(request: Request) -> str | None:
    """The client's address: SSH_CONNECTION's first field, else PAM_RHOST."""
    if request.ssh_connection:
        return request.ssh_connection.split(" ", 1)[0]
    return request.rhost


def login(request: Request, user: str, policy: Policy, store: Store, clock: Clock) -> Decision:
    """The user answered ``email``: mail a new code, then ask for it."""
    from pam_twofa.mail import mailer

    conv = request.conversation
    code = new_code(policy.emergency.code_digits)
    with store.update(user) as st:  # no conversation under the lock: said after it
        now = clock.now()
        refused = _refusal(st, now) or _held(st, policy, now)
        if refused is None:
            try:
                reserve_send(st, policy, now)
            except SendLimit as exc:
                refused = exc.reason, exc.message
            else:
                st.emergency = seal(code, now, policy.emergency.ttl_seconds)  # voids the last
        address = st.email or ""
    if refused is not None:
        conv.error(refused[1])
        return Decision(outcome=Outcome.REFUSE, reason=refused[0])
    minutes = max(1, policy.emergency.ttl_seconds // 60)
    try:
        mailer.send(mailer.server(policy.smtp), address, "Your emergency verification code",
                    _code_body(user, code, minutes, client_of(request), now))
    except mailer.MailError as exc:
        conv.error(f"The emergency code could not be mailed ({exc.kind}); try your "
                   "authenticator or contact your administrator.")
        return Decision(outcome=Outcome.REFUSE, reason=exc.reason)
    conv.info(f"An emergency code was sent to {mailer.mask(address)}; "
              f"it is valid for {minutes} minutes.")
    answer = conv.ask(EMERGENCY_PROMPT)
    if answer is None:
        return Decision(outcome=Outcome.REFUSE, reason="no-answer")
    return check(request, user, answer, policy, store, clock)


def _refusal(st: UserState, now: float) -> tuple[str, str] | None:
    if not st.enrolled:
        return "not-enrolled", "Two-factor authentication is not set up for your account."
    if lockout.suspended(st):
        return "suspended", MSG_SUSPENDED
    until = lockout.locked_until(st, now)
    if until is not None:
        return "locked", f"Too many wrong codes: locked until {format_time(until)}."
    if not st.email:
        return "no-email", "No verified security email is set for your account."
    return None


def _held(st: UserState, policy: Policy, now: float) -> tuple[str, str] | None:
    until = held_until(policy, st, now)
    return None if until is None else ("email-changed", held_message(until))


def check(request: Request, user: str, answer: str, policy: Policy, store: Store,
          clock: Clock) -> Decision:
    """Verify an emergency code under the user's lock: once only, counted on failure."""
    from pam_twofa.mail import notify

    conv = request.conversation
    ok = False
    locked = None
    with store.update(user) as st:  # no conversation under the lock: said after it
        now = clock.now()
        refused = _refusal(st, now)
        if refused is None and not answer.strip():  # no guess: not counted (as in core)
            refused = "empty", "No emergency code was entered."
        if refused is None:
            ok = matches(st.emergency, answer, now)
            if ok:
                st.emergency = None  # accepted once
                lockout.record_success(st, now)
            else:
                if st.emergency and not now < float(st.emergency.get("expires", 0)):
                    st.emergency = None  # expired: no use keeping it
                locked = lockout.record_failure(st, policy.lockout, now)
        failures = st.failures
        suspended = lockout.suspended(st)
        address = st.email or ""
    if refused is not None:
        conv.error(refused[1])
        return Decision(outcome=Outcome.REFUSE, reason=refused[0])
    client = client_of(request)
    if ok:
        sent = notify.emergency_code_used(policy, user, address, client=client, now=now)
        return Decision(outcome=Outcome.SUCCESS, reason="emergency-code",
                        fields=(("notified", "yes" if sent else "no"),))
    fields: tuple[tuple[str, Any], ...] = (("failures", failures),)
    message = "Wrong or expired emergency code."
    if suspended:
        message += " " + MSG_SUSPENDED
    elif locked is not None:
        message += f" Too many wrong codes: locked until {format_time(locked)}."
    conv.error(message)
    if suspended:
        sent = notify.suspended(policy, user, address, client=client, now=now)
        fields += (("suspended", "yes"), ("notified", "yes" if sent else "no"))
    elif locked is not None:
        sent = notify.locked_out(policy, user, address, client=client, now=now, until=locked)
        fields += (("locked_until", int(locked)), ("notified", "yes" if sent else "no"))
    return Decision(outcome=Outcome.REFUSE, reason="bad-emergency-code", fields=fields)


def _code_body(user: str, code: str, minutes: int, client: str | None, now: float) -> str:
    from pam_twofa.mail import mailer

    return (f"Your emergency verification code for {user}@{mailer.hostname()} is:\n\n"
            f"    {code}\n\n"
            f"It is valid for {minutes} minutes and can be used once.\n"
            f"Requested from {client or 'a local login'} at {format_time(now)}.\n\n"
            "If you did not ask for it, someone knows your password: change it and "
            "tell your administrator.\n")
