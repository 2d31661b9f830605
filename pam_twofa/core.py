"""The decision for one login: ``authenticate(request, policy, store, clock, ...)``.

Pure of PAM and of I/O: the PAM face, the tests and the tools call it alike.
Everything it needs comes in: the request (who, from where, and a conversation to
ask and tell through), the policy, the store (operations, see ``store``), the clock,
the notifier (mail in production, a recorder in tests) and the clock hint. It
returns a ``Decision``; expected failures are ``TwofaError`` and the face maps them.

Core imports the features (trust, emergency, inline: lazily, when a switch or an
answer needs them); features import the login types from ``login``, never core.
"""

from __future__ import annotations

from pam_twofa.errors import FleetUnavailable, InvalidUserName, LockTimeout
from pam_twofa.login import (
    CODE_PROMPT,
    MSG_BUSY,
    MSG_CLOCK,
    MSG_OFFLINE,
    MSG_SUSPENDED,
    MSG_WRONG,
    ClockHint,
    Conversation,
    Decision,
    Notifier,
    Outcome,
    Request,
    email_held_until,
    format_time,
    lock_notices,
    offers_email,
    validate_user_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.login import Account, Clock, LoginView
    from pam_twofa.policy import Policy
    from pam_twofa.store import Store
    from pam_twofa.trust import Binding
    from pam_twofa.verify import Verdict

__all__ = ["CODE_PROMPT", "Conversation", "Decision", "Outcome", "Request", "authenticate"]

EMAIL_ANSWER = "email"  # what the user types at the code prompt to get a code by mail
EMAIL_PROMPT = "Verification code (or 'email' to get one by mail): "
RECOVERY_PROMPT = "Recovery code: "
MSG_OFFLINE_RECOVERY = ("The fleet database cannot be reached: only a recovery code can "
                        "be used now.")


def authenticate(request: Request, policy: Policy, store: Store, clock: Clock,
                 notifier: Notifier | None = None, hint: ClockHint | None = None) -> Decision:
    """Decide one login's second factor.

    A user's lock held too long by another login is a refusal, never an internal
    error: failmode ``safe`` would turn that into a login with the password alone.
    Nothing here talks to the client while holding the lock (a client whose output
    blocks would hold it): every store operation takes and releases it.
    """
    try:
        return _decide(request, policy, store, clock, notifier or Notifier(),
                       hint or ClockHint())
    except LockTimeout:
        request.conversation.error(MSG_BUSY)
        return Decision(outcome=Outcome.REFUSE, reason="lock-timeout")


def _decide(request: Request, policy: Policy, store: Store, clock: Clock,
            notifier: Notifier, hint: ClockHint) -> Decision:
    conv = request.conversation
    rules = None
    if policy.services or policy.exempt_networks:  # per-service rules: pam_twofa.scope
        from pam_twofa import scope

        rules = scope.effective(policy, request.service, request.client())
        if not rules.enabled:  # for everyone, before any question: no account enumeration
            return Decision(outcome=Outcome.IGNORE, reason="service-disabled")
        policy = rules.applied(policy)  # the service's mandatory and trust switch
    try:
        validate_user_name(request.user)
    except InvalidUserName:
        _ask_code(request)  # the same conversation as for a real user
        conv.error(MSG_WRONG)
        return Decision(outcome=Outcome.REFUSE, reason="bad-user-name")
    try:
        if rules is not None and rules.network is not None:
            return _exempt(request, rules.address, rules.network, store, clock)
        return _known(request, policy, store, clock, notifier, hint)
    except FleetUnavailable as exc:  # the fleet database did not answer in time
        return _offline(request, policy, exc, store, clock, notifier, hint)


def _offline(request: Request, policy: Policy, exc: FleetUnavailable, store: Store,
             clock: Clock, notifier: Notifier, hint: ClockHint) -> Decision:
    """The fleet store's offline rule: a user the policy requires, or whom the
    daemon knows enrolled, is refused; only a user the policy does not cover and
    whom the daemon positively says is not enrolled logs in with the password.
    ``enrolled`` None (the daemon itself did not answer, or has no list yet) is a
    refusal too: whoever can make the daemon unreachable must not skip anyone's
    second factor. (With the file store this never happens.) Break-glass
    (``offline: recovery-codes``): a user whose recovery-code hashes the daemon
    cached may answer with one, checked there; logged reason=offline."""
    account = request.account
    enrolled = exc.enrolled
    required = account is not None and policy.mandatory.requires(
        account.name, account.uid, account.groups)
    fields = (("enrolled", "unknown" if enrolled is None else "yes" if enrolled else "no"),)
    if enrolled is False and not required:
        return Decision(outcome=Outcome.IGNORE, reason="offline", fields=fields)
    if (exc.recovery_codes and account is not None
            and policy.store.postgresql.offline == "recovery-codes"):
        request.conversation.info(MSG_OFFLINE_RECOVERY)
        answer = _ask_code(request, RECOVERY_PROMPT)
        if answer is None:
            return Decision(outcome=Outcome.REFUSE, reason="no-answer")
        try:
            verdict = store.check_code(account.name, answer, policy, clock.now())
        except FleetUnavailable:
            pass  # the daemon went away too: refused below
        else:
            decision = _told(request, account.name, verdict, policy, clock, notifier, hint)
            if not verdict.offline:  # the database answered again: its decision
                return decision
            return decision.replace(reason="offline",
                                    fields=(("verdict", verdict.reason), *decision.fields))
    request.conversation.error(MSG_OFFLINE)
    return Decision(outcome=Outcome.REFUSE, reason="offline", fields=fields)


def _known(request: Request, policy: Policy, store: Store, clock: Clock,
           notifier: Notifier, hint: ClockHint) -> Decision:
    """A valid user name, outside exempt networks: ask (or not) and decide."""
    conv = request.conversation
    account = request.account
    if account is None:
        _ask_code(request)  # no account enumeration through the prompt
        conv.error(MSG_WRONG)
        return Decision(outcome=Outcome.REFUSE, reason="unknown-user")
    user = account.name
    binding = _binding(request, policy)  # None unless trust may apply to this login
    view = store.view(user, clock.now(), binding)  # one read, no lock, no secret
    if view is None or not view.enrolled:
        required = policy.mandatory.requires(user, account.uid, account.groups)
        return _not_enrolled(request, account, required, policy, store, clock)
    if binding is not None and view.trusted:  # a trusted device skips the code
        from pam_twofa import trust

        trusted = trust.skip(request, user, binding, store, clock)
        if trusted is not None:  # revoked, or locked since the read: ask the code
            return trusted
    offer = _offer_email(request, view, policy, clock.now())
    answer = _ask_code(request, EMAIL_PROMPT if offer else CODE_PROMPT)
    if answer is None:
        return Decision(outcome=Outcome.REFUSE, reason="no-answer")
    if offer and answer.strip().lower() == EMAIL_ANSWER:
        from pam_twofa import emergency

        decided: Decision = emergency.login(request, user, policy, store, clock, notifier)
        return decided
    verdict = store.check_code(user, answer, policy, clock.now(), binding)  # the one write
    decision = _told(request, user, verdict, policy, clock, notifier, hint)
    if verdict.offer_trust and binding is not None:  # a TOTP code, from a new device
        from pam_twofa import trust

        extra = trust.offer(request, user, binding, policy, store, clock, notifier)
        decision = decision.replace(fields=decision.fields + extra)
    return decision


def _binding(request: Request, policy: Policy) -> Binding | None:
    """What a trusted-device record would bind for this login, when trust can apply:
    the switch is on, the code was not given with the password, and the policy
    allows trust from this client (loads ``trust`` only with the switch on)."""
    if not policy.trusted_devices.enabled or request.code is not None:
        return None
    from pam_twofa import trust

    binding = trust.Binding.of(request)
    return binding if binding.allowed(policy.trusted_devices) else None


def _offer_email(request: Request, view: LoginView, policy: Policy, now: float) -> bool:
    """Whether the code prompt offers an emergency code by mail; says so when a
    change of address holds it. No mail module loads for this."""
    if not offers_email(policy, view.email):
        return False
    until = email_held_until(policy, view.email_changed_at, now)
    if until is not None:
        from pam_twofa import emergency

        request.conversation.info(emergency.held_message(until))
        return False
    return True


def _exempt(request: Request, address: str | None, network: str, store: Store,
            clock: Clock) -> Decision:
    """A client in an exempt network: no code is asked, of anyone (known or not, so
    nothing is told about accounts). A lock or a suspension is the account's, not the
    network's: an enrolled user under one is refused, as at the code prompt."""
    fields: tuple[tuple[str, Any], ...] = (("address", address), ("network", network))
    now = clock.now()
    view = store.view(request.account.name, now) if request.account is not None else None
    if view is not None and view.enrolled:
        if view.suspended:
            request.conversation.error(MSG_SUSPENDED)
            return Decision(outcome=Outcome.REFUSE, reason="suspended", fields=fields)
        if view.locked_until > now:
            request.conversation.error(f"Too many wrong codes: locked until "
                                       f"{format_time(view.locked_until)}.")
            return Decision(outcome=Outcome.REFUSE, reason="locked",
                            fields=(("locked_until", int(view.locked_until)), *fields))
    return Decision(outcome=Outcome.IGNORE, reason="exempt-network", fields=fields)


def _ask_code(request: Request, prompt: str = CODE_PROMPT) -> str | None:
    if request.code is not None:
        return request.code
    return request.conversation.ask(prompt)


def _told(request: Request, user: str, verdict: Verdict, policy: Policy, clock: Clock,
          notifier: Notifier, hint: ClockHint) -> Decision:
    """Say what ``verdict`` means to the client (after the lock), notify, decide."""
    if verdict.reason == "ok":
        return Decision(outcome=Outcome.SUCCESS, reason="ok")
    conv = request.conversation
    if verdict.left is not None:
        conv.info(f"Recovery code accepted: {verdict.left} left. "
                  "Run 'twofa-enroll recovery-codes' to get new ones.")
        return Decision(outcome=Outcome.SUCCESS, reason="recovery-code",
                        fields=(("recovery_codes_left", verdict.left),))
    message, fields = verdict.message, verdict.fields
    now = clock.now()
    if verdict.reason == "bad-code":  # a clock check found more skew than the window covers?
        offset = hint.offset_beyond(policy.totp.window * policy.totp.period, now)
        if offset is not None:
            message = f"{message} {MSG_CLOCK}"
            fields += (("clock_offset", f"{offset:+.1f}"),)
    if message:
        conv.error(message)
    fields += lock_notices(request, user, verdict, notifier, now)
    return Decision(outcome=Outcome.REFUSE, reason=verdict.reason, fields=fields)


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
    # Kept per uid for uid 0: every uid-0 account (root, toor, ...) is root, so they
    # share root's one grace period (see ``Store.grace_start``).
    key = "root" if account.uid == 0 else account.name
    deadline = (store.grace_start(key, now, count_enrollment=key != account.name)
                + policy.enrollment.grace_days * 86400)
    if now < deadline:
        conv.info("Two-factor authentication will be required for your account from "
                  f"{format_time(deadline)}. Run 'twofa-enroll' to set it up now.")
        return Decision(outcome=Outcome.IGNORE, reason="grace",
                        fields=(("grace_until", int(deadline)),))
    conv.error("Two-factor authentication is required for your account and the grace "
               "period is over. Ask your administrator to enroll you.")
    return Decision(outcome=Outcome.REFUSE, reason="enrollment-required")
