"""The decision for one login: ``authenticate(request, policy, store, clock)``.

Pure of PAM: the PAM face, the tests and the tools call it alike. Everything it
needs comes in: the request (who, from where, and a conversation to ask and
tell through), the policy, the state store and the clock. It returns a
``Decision``; expected failures are ``TwofaError`` and the face maps them.
"""

from __future__ import annotations

from pam_twofa import lockout, totp
from pam_twofa.clock import format_time
from pam_twofa.errors import InvalidUserName, LockTimeout
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
MSG_REPLAY = "That code was already used; wait for the next one."
MSG_EMPTY = "No verification code was entered."
MSG_SUSPENDED = ("Two-factor authentication is suspended for your account after too many "
                 "wrong codes; ask your administrator to unlock it.")
MSG_BUSY = "Another login to your account is in progress; try again in a moment."


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
    """Decide one login's second factor.

    A user's lock held too long by another login is a refusal, never an internal
    error: failmode ``safe`` would turn that into a login with the password alone.
    Nothing here talks to the client while holding the lock (a client whose output
    blocks would hold it), so the lock is only ever held for file work.
    """
    try:
        return _decide(request, policy, store, clock)
    except LockTimeout:
        request.conversation.error(MSG_BUSY)
        return Decision(outcome=Outcome.REFUSE, reason="lock-timeout")


def _decide(request: Request, policy: Policy, store: Store, clock: Clock) -> Decision:
    conv = request.conversation
    rules = None
    if policy.services or policy.exempt_networks:  # per-service rules: pam_twofa.scope
        from pam_twofa import scope

        rules = scope.effective(policy, request.service,
                                scope.client_of(request.ssh_connection, request.rhost))
        if not rules.enabled:  # for everyone, before any question: no account enumeration
            return Decision(outcome=Outcome.IGNORE, reason="service-disabled")
        policy = rules.applied(policy)  # the service's mandatory and trust switch
    try:
        validate_user_name(request.user)
    except InvalidUserName:
        _ask_code(request)  # the same conversation as for a real user
        conv.error(MSG_WRONG)
        return Decision(outcome=Outcome.REFUSE, reason="bad-user-name")
    account = request.account
    if rules is not None and rules.network is not None:
        return _exempt(request, rules.address, rules.network, store, clock)
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


def _exempt(request: Request, address: str | None, network: str, store: Store,
            clock: Clock) -> Decision:
    """A client in an exempt network: no code is asked, of anyone (known or not, so
    nothing is told about accounts). A lock or a suspension is the account's, not the
    network's: an enrolled user under one is refused, as at the code prompt."""
    fields: tuple[tuple[str, Any], ...] = (("address", address), ("network", network))
    state = store.load(request.account.name) if request.account is not None else None
    if state is not None and state.enrolled:
        if lockout.suspended(state):
            request.conversation.error(MSG_SUSPENDED)
            return Decision(outcome=Outcome.REFUSE, reason="suspended", fields=fields)
        until = lockout.locked_until(state, clock.now())
        if until is not None:
            request.conversation.error(f"Too many wrong codes: locked until "
                                       f"{format_time(until)}.")
            return Decision(outcome=Outcome.REFUSE, reason="locked",
                            fields=(("locked_until", int(until)), *fields))
    return Decision(outcome=Outcome.IGNORE, reason="exempt-network", fields=fields)


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
    deadline = _grace_start(store, account, now) + policy.enrollment.grace_days * 86400
    if now < deadline:
        conv.info("Two-factor authentication will be required for your account from "
                  f"{format_time(deadline)}. Run 'twofa-enroll' to set it up now.")
        return Decision(outcome=Outcome.IGNORE, reason="grace",
                        fields=(("grace_until", int(deadline)),))
    conv.error("Two-factor authentication is required for your account and the grace "
               "period is over. Ask your administrator to enroll you.")
    return Decision(outcome=Outcome.REFUSE, reason="enrollment-required")


def _grace_start(store: Store, account: Account, now: float) -> float:
    """When the account's grace period began (written on its first login in scope).

    Kept per uid for uid 0: every uid-0 account (root, toor, ...) is root, so they
    share root's one grace period, which for toor also ends when root (enrolled)
    enrolled long enough ago; a second uid-0 name never starts one of its own.
    """
    key = "root" if account.uid == 0 else account.name
    state = store.load(key)
    root_enrolled = state is not None and state.enrolled and key != account.name
    starts = [t for t in (state.first_seen if state else None,
                          state.enrolled_at if state and root_enrolled else None)
              if t is not None]
    if starts:
        return min(starts)
    with store.update(key) as st:
        if st.first_seen is None:
            st.first_seen = now
        return st.first_seen


class Verdict:
    """What ``verify`` decided under the lock; said to the client after it."""

    def __init__(self, reason: str, message: str | None = None,
                 fields: tuple[tuple[str, Any], ...] = ()) -> None:
        self.reason = reason
        self.message = message
        self.fields = fields
        self.email: str | None = None
        self.locked: float | None = None
        self.suspended = False
        self.left: int | None = None  # recovery codes left after one was used


def _check_code(request: Request, user: str, answer: str, policy: Policy, store: Store,
                clock: Clock) -> Decision:
    """Verify the answer under the user's lock (replay and lockout stay exact), then
    talk to the client: never while the lock is held."""
    with store.update(user) as st:
        now = clock.now()
        verdict = verify(st, answer, policy, now)
    if verdict.reason == "ok":
        return Decision(outcome=Outcome.SUCCESS, reason="ok")
    conv = request.conversation
    if verdict.left is not None:
        conv.info(f"Recovery code accepted: {verdict.left} left. "
                  "Run 'twofa-enroll recovery-codes' to get new ones.")
        return Decision(outcome=Outcome.SUCCESS, reason="recovery-code",
                        fields=(("recovery_codes_left", verdict.left),))
    message, fields = verdict.message, verdict.fields
    if verdict.reason == "bad-code":  # a clock check found more skew than the window covers?
        offset = clock.offset_beyond(policy.totp.window * policy.totp.period)
        if offset is not None:
            message = f"{message} The server clock may be off; tell your administrator."
            fields += (("clock_offset", f"{offset:+.1f}"),)
    if message:
        conv.error(message)
    if (verdict.locked is not None or verdict.suspended) and verdict.email:
        from pam_twofa import emergency
        from pam_twofa.mail import notify  # mail only now: bounded by smtp timeout

        client = emergency.client_of(request)
        if verdict.suspended:
            sent = notify.suspended(policy, user, verdict.email, client=client, now=now)
        else:
            sent = notify.locked_out(policy, user, verdict.email, client=client, now=now,
                                     until=verdict.locked or now)
        fields += (("notified", "yes" if sent else "no"),)
    return Decision(outcome=Outcome.REFUSE, reason=verdict.reason, fields=fields)


def verify(st: UserState, answer: str, policy: Policy, now: float) -> Verdict:
    """The decision on ``answer``, changing ``st`` (held under its lock) as it goes.

    The one rule for a code from an enrolled user, used by logins and by the
    enrollment service (``enrollment.check_code``) alike.

    Not counted toward the lockout: an empty answer (no guess was made) and a
    replay, a code of a step not newer than the last accepted one (it proves
    knowledge of a real code; the user typed it twice, e.g. ssh then sudo).
    """
    if not st.enrolled:  # reset by an admin while we were asking
        return Verdict("not-enrolled")
    if lockout.suspended(st):
        return Verdict("suspended", MSG_SUSPENDED)
    until = lockout.locked_until(st, now)
    if until is not None:
        return Verdict("locked", f"Too many wrong codes: locked until {format_time(until)}.",
                        (("locked_until", int(until)),))
    if not answer.strip():
        return Verdict("empty", MSG_EMPTY)
    step = _match(st, answer, policy, now)
    if step is not None and step > st.last_step:
        st.last_step = step
        lockout.record_success(st, now)
        return Verdict("ok")
    if step is not None:
        return Verdict("replay", MSG_REPLAY)
    left = _use_recovery_code(st, answer, now)
    if left is not None:
        verdict = Verdict("recovery-code")
        verdict.left = left
        return verdict
    locked = lockout.record_failure(st, policy.lockout, now)
    verdict = Verdict("bad-code", MSG_WRONG, (("failures", st.failures),))
    verdict.email = st.email
    if lockout.suspended(st):
        verdict.suspended = True
        verdict.message = f"{MSG_WRONG} {MSG_SUSPENDED}"
        verdict.fields += (("suspended", "yes"),)
    elif locked is not None:
        verdict.locked = locked
        verdict.message = f"{MSG_WRONG} Too many wrong codes: locked until {format_time(locked)}."
        verdict.fields += (("locked_until", int(locked)),)
    return verdict


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
