"""Notification mails to a user's verified security email.

One function per event, each switchable in ``policy.notifications``: an
emergency code was used, a device was trusted, the account was locked (or its
second factor suspended), an admin reset the user's 2FA. Each mail says what
happened, on which host, from which client address and when; never a secret, a
code or a device token. Sending is best effort and bounded by
``smtp.timeout_seconds``: every function returns whether a mail went out and
never raises, because a notification must not turn a login or an admin command
into a failure. ``MailNotifier`` puts them behind ``login.Notifier`` for the login.
"""

from __future__ import annotations

from pam_twofa.errors import TwofaError
from pam_twofa.login import Notifier, format_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.policy import Policy

FOOTER = ("\nIf this was not you or someone you asked, contact your administrator "
          "at once.\n\n-- pam-twofa on {host}\n")


def _send(policy: Policy, switch: bool, address: str | None, subject: str,
          lines: list[str]) -> bool:
    from pam_twofa.errors import TwofaError
    from pam_twofa.mail import mailer

    if not (switch and address and mailer.configured(policy.smtp)):
        return False
    host = mailer.hostname()
    body = "\n".join(lines) + "\n" + FOOTER.format(host=host)
    try:
        mailer.send(mailer.server(policy.smtp), address, f"[{host}] {subject}", body)
    except (TwofaError, OSError):
        return False
    return True


def _facts(user: str, client: str | None, now: float, remote: bool = True) -> list[str]:
    from pam_twofa.mail import mailer

    lines = ["", f"Account: {user}", f"Host:    {mailer.hostname()}"]
    if remote:
        lines.append(f"Client:  {client or 'local (no remote address)'}")
    return [*lines, f"Time:    {format_time(now)}"]


def emergency_code_used(policy: Policy, user: str, address: str | None, *,
                        client: str | None, now: float) -> bool:
    """An emailed emergency code was just used to log in."""
    return _send(policy, policy.notifications.emergency_code_used, address,
                 "An emergency code was used to log in",
                 ["An emergency verification code sent to this address was used to log "
                  "in to your account.", *_facts(user, client, now)])


def device_trusted(policy: Policy, user: str, address: str | None, *,
                   client: str | None, now: float, until: float | None = None,
                   device: str | None = None) -> bool:
    """A device was trusted to skip the code (``device``: a label, never its token)."""
    lines = ["A device was trusted: logins from it will skip the verification code"
             + (f" until {format_time(until)}." if until else "."),
             *_facts(user, client, now)]
    if device:
        lines.append(f"Device:  {device}")
    return _send(policy, policy.notifications.device_trusted, address,
                 "A device was trusted for your account", lines)


def locked_out(policy: Policy, user: str, address: str | None, *, client: str | None,
               now: float, until: float) -> bool:
    """Wrong codes locked the account."""
    return _send(policy, policy.notifications.locked_out, address,
                 "Your account was locked after wrong codes",
                 ["Too many wrong verification codes were entered for your account; "
                  f"it is locked until {format_time(until)}.",
                  "Someone who knows your password may be trying to log in.",
                  *_facts(user, client, now)])


def suspended(policy: Policy, user: str, address: str | None, *, client: str | None,
              now: float) -> bool:
    """``lockout.max_consecutive_failures`` wrong codes suspended the second factor
    (sent under the ``locked_out`` switch)."""
    limit = policy.lockout.max_consecutive_failures
    return _send(policy, policy.notifications.locked_out, address,
                 "Two-factor authentication suspended for your account",
                 [f"{limit} wrong verification codes in a row were entered for your "
                  "account, so its second factor is suspended: no code is accepted "
                  "until an administrator unlocks it (twofa-admin unlock).",
                  "Whoever typed them knows your password: change it, and tell your "
                  "administrator.", *_facts(user, client, now)])


def reset_by_admin(policy: Policy, user: str, address: str | None, *, now: float,
                   by: str | None = None) -> bool:
    """An administrator removed the user's 2FA (the user must enroll again)."""
    lines = ["An administrator reset two-factor authentication for your account: "
             "your authenticator, recovery codes and trusted devices no longer work, "
             "and you must enroll again.", *_facts(user, None, now, remote=False)]
    if by:
        lines.append(f"By:      {by}")
    return _send(policy, policy.notifications.reset_by_admin, address,
                 "Your two-factor authentication was reset", lines)


def email_changed(policy: Policy, user: str, old_address: str, new_masked: str, *,
                  now: float, held_until: float | None) -> bool:
    """The user's security email was replaced: told at the old address, always (no
    switch: it is how the owner learns that someone else may have taken the way in)."""
    lines = [f"The security email of your account was changed to {new_masked}. "
             "Emergency codes and notices go there from now on."]
    if held_until is not None:
        lines.append(f"Emergency codes by mail are paused until {format_time(held_until)}.")
    return _send(policy, True, old_address, "Your security email was changed",
                 [*lines, *_facts(user, None, now, remote=False)])


def emergency_code(policy: Policy, user: str, address: str, code: str, *, minutes: int,
                   client: str | None, now: float) -> None:
    """Mail an emergency code (raises ``MailError``: the login says why it failed)."""
    from pam_twofa.mail import mailer

    body = (f"Your emergency verification code for {user}@{mailer.hostname()} is:\n\n"
            f"    {code}\n\n"
            f"It is valid for {minutes} minutes and can be used once.\n"
            f"Requested from {client or 'a local login'} at {format_time(now)}.\n\n"
            "If you did not ask for it, someone knows your password: change it and "
            "tell your administrator.\n")
    mailer.send(mailer.server(policy.smtp), address, "Your emergency verification code", body)


class MailNotifier(Notifier):
    """The production ``login.Notifier``: the functions above, by mail."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def notice(self, event: str, user: str, address: str, **facts: Any) -> bool:
        send: Any = {"locked_out": locked_out, "suspended": suspended,
                "device_trusted": device_trusted,
                "emergency_code_used": emergency_code_used}[event]
        return bool(send(self.policy, user, address, **facts))

    def send_code(self, user: str, address: str, code: str, *, minutes: int,
                  client: str | None, now: float) -> tuple[bool, str]:
        from pam_twofa.mail import mailer

        try:
            emergency_code(self.policy, user, address, code, minutes=minutes, client=client,
                           now=now)
        except mailer.MailError as exc:
            return False, exc.reason
        except (TwofaError, OSError) as exc:  # never raises: a refusal with a reason
            return False, getattr(exc, "reason", "mail-error")
        return True, mailer.mask(address)
