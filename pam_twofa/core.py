"""The decision for one login: ``authenticate(request, policy, store, clock)``.

Pure of PAM: the PAM face, the tests and the tools call it alike. Everything it
needs comes in: the request (who, from where, and a conversation to ask and
tell through), the policy, the state store and the clock. It returns a
``Decision``; expected failures are ``TwofaError`` and the face maps them.
"""

from __future__ import annotations

from pam_twofa import lockout, totp
from pam_twofa.clock import format_time
from pam_twofa.errors import InvalidUserName
from pam_twofa.record import Record
from pam_twofa.store import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.accounts import Account
    from pam_twofa.clock import Clock
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store

CODE_PROMPT = "Verification code: "
MSG_WRONG = "Wrong verification code."
MSG_UNAVAILABLE = "Two-factor authentication is unavailable; contact your administrator."


class Outcome:
    """What a decision means for PAM (plain strings: an Enum costs ~0.2 ms a login)."""

    SUCCESS = "success"  # the second factor was proven
    IGNORE = "ignored"  # this module has no say (not in scope, or in grace)
    REFUSE = "refused"  # the login must fail


class Decision(Record):
    outcome: str  # an Outcome value
    reason: str  # stable token for the log line
    fields: tuple[tuple[str, Any], ...] = ()  # extra log fields, never secrets


class Conversation:
    """How the core talks to the user; the PAM face wraps pamh.conversation."""

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        """The user's answer, or None when there is none (no terminal, error)."""
        raise NotImplementedError

    def info(self, text: str) -> None:
        """A message to the user (suppressed under PAM_SILENT)."""

    def error(self, text: str) -> None:
        """An error message to the user (suppressed under PAM_SILENT)."""


class Request(Record):
    user: str
    account: Account | None  # None: NSS does not know the user
    conversation: Conversation
    service: str = ""
    rhost: str | None = None
    ssh_connection: str | None = None  # "client_ip client_port server_ip server_port"
    ssh_auth_info: str | None = None  # SSH_AUTH_INFO_0: completed methods
    code: str | None = None  # already given (single-prompt mode): do not ask


def authenticate(request: Request, policy: Policy, store: Store, clock: Clock) -> Decision:
    """Decide one login's second factor."""
    conv = request.conversation
    try:
        validate_user_name(request.user)
    except InvalidUserName:
        _ask_code(request)  # the same conversation as for a real user
        conv.error(MSG_WRONG)
        return Decision(outcome=Outcome.REFUSE, reason="bad-user-name")
    account = request.account
    if account is None:
        _ask_code(request)  # no account enumeration through the prompt
        conv.error(MSG_WRONG)
        return Decision(outcome=Outcome.REFUSE, reason="unknown-user")
    state = store.load(account.name)
    if state is None or not state.enrolled:
        required = policy.mandatory.requires(account.name, account.uid, account.groups)
        return _not_enrolled(request, account, required, policy, store, clock)
    if policy.trusted_devices.enabled:  # a trusted device skips the code (never a lock)
        from pam_twofa import trust

        trusted = trust.skip(request, account.name, policy, store, clock)
        if trusted is not None:
            return trusted
    offer = False
    if state.email and policy.emergency.enabled:  # offer an emergency code by mail
        from pam_twofa import emergency

        offer = emergency.offer(request, policy, state, clock.now())  # says if held
    answer = _ask_code(request, emergency.CODE_PROMPT if offer else CODE_PROMPT)
    if answer is None:
        return Decision(outcome=Outcome.REFUSE, reason="no-answer")
    if offer and answer.strip().lower() == emergency.ANSWER:
        return emergency.login(request, account.name, policy, store, clock)
    decision = _check_code(request, account.name, answer, policy, store, clock)
    if decision.reason == "ok" and policy.trusted_devices.enabled:  # a TOTP code only
        from pam_twofa import trust

        extra = trust.offer(request, account.name, policy, store, clock)
        decision = decision.replace(fields=decision.fields + extra)
    return decision


def _ask_code(request: Request, prompt: str = CODE_PROMPT) -> str | None:
    if request.code is not None:
        return request.code
    return request.conversation.ask(prompt)


def _not_enrolled(request: Request, account: Account, required: bool, policy: Policy,
                  store: Store, clock: Clock) -> Decision:
    conv = request.conversation
    if not required:
        return Decision(outcome=Outcome.IGNORE, reason="not-enrolled")
    if policy.enrollment.mode == "deny":
        conv.error("Two-factor authentication is required for your account and is not "
                   "set up. Ask your administrator to enroll you.")
        return Decision(outcome=Outcome.REFUSE, reason="enrollment-required")
    if policy.enrollment.mode == "inline":  # enroll inside this login (loads qrcode)
        from pam_twofa import inline

        return inline.enroll(request, account.name, policy, store, clock)
    now = clock.now()
    state = store.load(account.name)
    first_seen = state.first_seen if state is not None else None
    if first_seen is None:
        with store.update(account.name) as st:
            if st.first_seen is None:
                st.first_seen = now
            first_seen = st.first_seen
    deadline = first_seen + policy.enrollment.grace_days * 86400
    if now < deadline:
        conv.info("Two-factor authentication will be required for your account from "
                  f"{format_time(deadline)}. Run 'twofa-enroll' to set it up now.")
        return Decision(outcome=Outcome.IGNORE, reason="grace",
                        fields=(("grace_until", int(deadline)),))
    conv.error("Two-factor authentication is required for your account and the grace "
               "period is over. Ask your administrator to enroll you.")
    return Decision(outcome=Outcome.REFUSE, reason="enrollment-required")


def _check_code(request: Request, user: str, answer: str, policy: Policy, store: Store,
                clock: Clock) -> Decision:
    """Verify the answer under the user's lock: replay and lockout stay exact."""
    conv = request.conversation
    with store.update(user) as st:
        now = clock.now()
        if not st.enrolled:  # reset by an admin while we were asking
            return Decision(outcome=Outcome.REFUSE, reason="not-enrolled")
        until = lockout.locked_until(st, now)
        if until is not None:
            conv.error(f"Too many wrong codes: locked until {format_time(until)}.")
            return Decision(outcome=Outcome.REFUSE, reason="locked",
                            fields=(("locked_until", int(until)),))
        step = _match(st, answer, policy, now)
        if step is not None and step > st.last_step:
            st.last_step = step
            lockout.record_success(st, now)
            return Decision(outcome=Outcome.SUCCESS, reason="ok")
        left = _use_recovery_code(st, answer, now) if step is None else None
        if left is None:
            reason = "replay" if step is not None else "bad-code"
            locked = lockout.record_failure(st, policy.lockout, now)
            failures = st.failures
            email = st.email
    if left is not None:
        conv.info(f"Recovery code accepted: {left} left. Run 'twofa-enroll' to get new ones.")
        return Decision(outcome=Outcome.SUCCESS, reason="recovery-code",
                        fields=(("recovery_codes_left", left),))
    message = MSG_WRONG
    fields: tuple[tuple[str, Any], ...] = (("failures", failures),)
    if locked is not None:
        message += f" Too many wrong codes: locked until {format_time(locked)}."
        fields += (("locked_until", int(locked)),)
    if reason == "bad-code":  # a clock check found more skew than the window covers?
        offset = clock.offset_beyond(policy.totp.window * policy.totp.period)
        if offset is not None:
            message += " The server clock may be off; tell your administrator."
            fields += (("clock_offset", f"{offset:+.1f}"),)
    conv.error(message)
    if locked is not None and email:  # tell the owner by mail (bounded by smtp timeout)
        from pam_twofa import emergency, notify

        sent = notify.locked_out(policy, user, email, client=emergency.client_of(request),
                                 now=now, until=locked)
        fields += (("notified", "yes" if sent else "no"),)
    return Decision(outcome=Outcome.REFUSE, reason=reason, fields=fields)


def _use_recovery_code(st: UserState, answer: str, now: float) -> int | None:
    """Consume the recovery code ``answer``; codes left, or None (hashlib loads only here)."""
    if not st.recovery_codes:
        return None
    from pam_twofa import recovery

    left = recovery.consume(st, answer)
    if left is not None:
        lockout.record_success(st, now)
    return left


def _match(st: UserState, answer: str, policy: Policy, now: float) -> int | None:
    code = totp.normalize_code(answer, st.digits)
    if code is None or st.secret is None:
        return None
    return totp.match_step(totp.b32decode(st.secret), code, now, digits=st.digits,
                           period=st.period, algorithm=st.algorithm, window=policy.totp.window)
