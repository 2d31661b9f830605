"""Where user state lives: an interface of operations (``filestore`` and the fleet
store implement it).

``Store`` is what the login, the enrollment service and the admin use. Its
operations take a user name and an answer and return verdicts: none hands out a
secret or the whole state, so a second backend (the fleet's database behind a
local daemon) keeps replay and lockout exact without secrets crossing its socket.
Each change is one locked read-modify-write; none talks to the client. A login
(see ``core``): ``view`` (one read, no lock), then at most one of
``skip_trusted`` / ``check_code`` / the emergency steps, and ``add_trusted`` only
when the user said yes to trust. The rules they run live in the feature modules
(``verify``, ``trust.use``, ``emergency``, ``enrollment``), shared by backends.
"""

from __future__ import annotations

from pam_twofa.login import MAX_NAME_BYTES, LoginView, validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any

    from pam_twofa.emergency import Issued
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.trust import Binding
    from pam_twofa.verify import Verdict

__all__ = ["MAX_NAME_BYTES", "LoginView", "Store", "fleet_socket", "validate_user_name"]


class Store:
    """Per-user state as operations: read without a lock, change under a per-user lock.

    A plain base rather than an ABC: ABCMeta costs ~0.1 ms on every login. Every
    operation validates the user name first (``login.validate_user_name``); time
    (``now``) and the policy come in; a lock not obtained in time is ``LockTimeout``.
    """

    # --- the login ---

    def view(self, user: str, now: float, binding: Binding | None = None) -> LoginView | None:
        """What a login needs to know before asking (None: no state). With a
        ``binding``, whether a live trusted-device record matches it (``trusted``)."""
        raise NotImplementedError

    def grace_start(self, user: str, now: float, count_enrollment: bool = False) -> float:
        """When ``user``'s grace period began: its first login in scope, noted now if
        this is it (locked write, once). ``count_enrollment``: an enrollment of
        ``user`` also starts it (root's, for the other uid-0 names)."""
        raise NotImplementedError

    def check_code(self, user: str, answer: str, policy: Policy, now: float,
                   binding: Binding | None = None) -> Verdict:
        """Decide ``answer`` under the user's lock (``verify.verify``: replay, recovery
        codes, lockout, suspension) and commit what it changed. With a ``binding``
        (trust on), a TOTP success from a device without a live record sets
        ``offer_trust``."""
        raise NotImplementedError

    def skip_trusted(self, user: str, binding: Binding, now: float,
                     ) -> tuple[str, float] | None:
        """Let a trusted device in (``trust.use``): (device id, expiry) with the use
        recorded, or None when no live record matches, or the user is locked,
        suspended or no longer enrolled."""
        raise NotImplementedError

    def add_trusted(self, user: str, binding: Binding, policy: Policy, now: float,
                    ) -> tuple[dict[str, Any], str | None] | None:
        """Trust ``binding`` (``trust.add``): (the record, the address to notify), or
        None when the user is no longer enrolled."""
        raise NotImplementedError

    def emergency_reserve(self, user: str, policy: Policy, now: float) -> Verdict | Issued:
        """Count a mail and make the user's one emergency code (``emergency.reserve``;
        the fleet's database makes its own): the code, the address to mail it to and
        its expiry, or a refusal. Only a hash of the code is stored; the caller mails it."""
        raise NotImplementedError

    def emergency_check(self, user: str, answer: str, policy: Policy, now: float) -> Verdict:
        """Decide an emergency code (``emergency.check_sealed``): once, counted on failure."""
        raise NotImplementedError

    def enroll_inline(self, user: str, secret: str, answer: str, policy: Policy,
                      now: float) -> tuple[str, list[str]]:
        """Enroll ``user`` with the ``secret`` this login showed, if ``answer`` is its
        code (``inline.confirm``): (``ok`` and the new recovery codes in clear, shown
        once) or (a refusal, ``[]``). The secret comes in, never goes out."""
        raise NotImplementedError

    # --- the admin and the enrollment service ---

    def status(self, user: str, now: float) -> dict[str, Any]:
        """What status commands show (``enrollment.status``): never a secret."""
        raise NotImplementedError

    def account(self, user: str, policy: Policy, now: float) -> dict[str, Any]:
        """What ``twofa-enroll status`` shows its owner: ``status`` and ``grace_until``,
        ``pending``, ``email``/``email_pending`` (masked), ``emergency_held_until``."""
        raise NotImplementedError

    def email_start(self, user: str, address: str, code: str, proof: str | None,
                    policy: Policy, now: float) -> str:
        """Name ``address`` as the security email, waiting for ``code`` (mailed by the
        caller, kept sealed) (``security_email.name_address``): ``new``/``ok``/
        ``recovery``, or ``code-needed`` or a refusal; ``SendLimit`` when over the
        hourly verification budget."""
        raise NotImplementedError

    def email_confirm(self, user: str, code: str, policy: Policy, now: float,
                      ) -> dict[str, Any]:
        """Make the waiting address the security email if ``code`` is its code
        (``security_email.settle``): ``problem`` (None: done), ``old`` (the address
        replaced, to notify), ``email`` (now), ``held_until`` (emergency codes)."""
        raise NotImplementedError

    def unlock(self, user: str) -> bool:
        """Lift a lock or suspension; True when the user has state."""
        raise NotImplementedError

    def reset(self, user: str) -> bool:
        """Forget the user entirely (they enroll again); True when there was state."""
        return self.delete(user)

    def begin_enrollment(self, user: str, proof: str | None, policy: Policy,
                         now: float) -> tuple[str, str | None]:
        """A new pending secret (``enrollment.begin``): (``new``/``ok``/``recovery``,
        the secret, shown once to its owner) or (a refusal, None). An enrolled user
        proves the second factor first (``verify.verify``; ``code-needed`` without)."""
        raise NotImplementedError

    def confirm_enrollment(self, user: str, code: str, policy: Policy, now: float,
                           ) -> tuple[str, list[str], dict[str, Any]]:
        """Activate the pending secret if ``code`` is its code (``enrollment.confirm``):
        (``ok``, new recovery codes in clear, what was revoked) or (a refusal, [], ...)."""
        raise NotImplementedError

    def new_recovery_codes(self, user: str, proof: str, policy: Policy, now: float,
                           ) -> tuple[str, list[str]]:
        """Replace the recovery codes once ``proof`` verifies: (``ok``/``recovery``,
        the codes in clear) or (a refusal, [])."""
        raise NotImplementedError

    def disable(self, user: str, proof: str, policy: Policy, now: float) -> str:
        """Turn 2FA off once ``proof`` verifies: ``ok``/``recovery`` or a refusal."""
        raise NotImplementedError

    def provision(self, user: str, secret: str, policy: Policy, now: float,
                  codes: list[str], *, replace: bool = True, digits: int | None = None,
                  period: int | None = None, algorithm: str | None = None,
                  ) -> dict[str, Any] | None:
        """An admin enrolls ``user`` with ``secret`` and these recovery ``codes`` (stored
        hashed; ``[]``: none) (``enrollment.provision``): what it revoked, or None when
        the user is enrolled and ``replace`` is false."""
        raise NotImplementedError

    def reset_recovery_codes(self, user: str) -> list[str] | None:
        """An admin gives ``user`` new recovery codes: them in clear, or None when not
        enrolled."""
        raise NotImplementedError

    def devices(self, user: str, now: float) -> list[dict[str, Any]]:
        """The user's trusted devices for display (``trust.listing``): no token."""
        raise NotImplementedError

    def revoke_devices(self, user: str, device_id: str | None) -> list[str] | None:
        """Revoke one trusted device (None: all): the ids removed, or None when the
        user has no state."""
        raise NotImplementedError

    def set_email(self, user: str, address: str | None) -> bool:
        """An admin sets ``user``'s security email (checked, counted as verified, no
        hold) or clears it (None); a pending emergency code stops working. False
        when clearing a user without state."""
        raise NotImplementedError

    def security_email(self, user: str) -> str | None:
        """The user's verified address (None: none), for the notice an admin's reset
        mails; read before the reset."""
        raise NotImplementedError

    def standings(self, now: float) -> dict[str, dict[str, Any]]:
        """Every user with state, for ``twofa-admin report``: ``enrolled``,
        ``first_seen``, ``locked_until`` (a live lock, else None), ``suspended``
        (bool), ``last_success``; or ``error`` (a state that cannot be read)."""
        raise NotImplementedError

    # --- whole states: FileStore's admin and service paths ---

    def load(self, user: str) -> UserState | None:
        """The committed state of ``user``, or None when there is none."""
        raise NotImplementedError

    def update(self, user: str) -> AbstractContextManager[UserState]:
        """Lock ``user``, yield its state (new if none), commit it if changed."""
        raise NotImplementedError

    def delete(self, user: str) -> bool:
        """Remove ``user``'s state; True when there was some."""
        raise NotImplementedError

    def users(self) -> list[str]:
        """Every user with state, sorted."""
        raise NotImplementedError


def fleet_socket(policy: Policy) -> tuple[str, float] | None:
    """Where this host's store is (``store.backend``), one rule for the login and the
    enrollment service: None for this host's files, else the fleet's ``twofa-fleetd``
    socket and ``timeout_seconds``. (The faces build the classes: the store module
    loads neither backend, so no import cycle.)"""
    if policy.store.backend != "postgresql":
        return None
    return policy.store.postgresql.socket, policy.store.postgresql.timeout_seconds
