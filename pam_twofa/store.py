"""Where user state lives: an interface of operations, and the file-per-user backend.

``Store`` is what the login, the enrollment service and the admin use. Its
operations take a user name and an answer and return verdicts: none hands out a
secret or the whole state, so a second backend (the fleet's database behind a
local daemon) keeps replay and lockout exact without secrets crossing its socket.
Each change is one locked read-modify-write; none talks to the client. A login
(see ``core``): ``view`` (one read, no lock), then at most one of
``skip_trusted`` / ``check_code`` / the emergency steps, and ``add_trusted`` only
when the user said yes to trust. The rules they run live in the feature modules
(``verify``, ``trust.use``, ``emergency``, ``enrollment``), shared by backends.

``FileStore``: one JSON file per user (0600 in 0700, root-owned), written atomically
under a per-user flock; ``load``/``update``/``delete`` serve admin paths, never a login.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, contextmanager

from pam_twofa import fastjson, fsutil
from pam_twofa.errors import CorruptState
from pam_twofa.login import MAX_NAME_BYTES, LoginView, validate_user_name
from pam_twofa.state import UserState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pam_twofa.login import Clock
    from pam_twofa.paths import Paths
    from pam_twofa.policy import Policy
    from pam_twofa.trust import Binding
    from pam_twofa.verify import Verdict

__all__ = ["MAX_NAME_BYTES", "FileStore", "LoginView", "Store", "validate_user_name"]



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

    def emergency_reserve(self, user: str, policy: Policy, code: str, now: float,
                          ) -> tuple[Verdict | None, str]:
        """Count a mail and seal ``code`` as the user's one emergency code
        (``emergency.reserve``): (a refusal or None, the address to mail it to).
        The code is sealed (hashed) before it is stored; the caller mails it."""
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


class FileStore(Store):
    """One JSON file per user, written atomically under an flock."""

    def __init__(self, paths: Paths, clock: Clock, lock_timeout: float = 10.0) -> None:
        self.paths = paths
        self.clock = clock
        self.lock_timeout = lock_timeout
        self._checked = False

    def _dirs(self) -> None:
        if not self._checked:
            fsutil.ensure_dir(self.paths.state_dir)
            fsutil.ensure_dir(self.paths.users_dir, "users directory")
            fsutil.ensure_dir(self.paths.locks_dir, "locks directory")
            self._checked = True

    def _file(self, user: str) -> str:
        return f"{self.paths.users_dir}/{validate_user_name(user)}.json"

    def load(self, user: str) -> UserState | None:
        path = self._file(user)
        self._dirs()
        data = fsutil.read_file(path)
        if data is None:
            return None
        try:
            plain = fastjson.loads(data)
        except ValueError:
            raise CorruptState(f"state file {path} is not valid JSON") from None
        return UserState.from_plain(user, plain)

    @contextmanager
    def update(self, user: str) -> Iterator[UserState]:
        path = self._file(user)
        self._dirs()
        with fsutil.FileLock(f"{self.paths.locks_dir}/{user}.lock", self.clock, self.lock_timeout):
            state = self.load(user)
            # Text, not the plain dict: that shares nested lists/dicts (devices,
            # pending) with the state, so changing one in place would go unseen.
            before = fastjson.dumps(state.to_plain()) if state is not None else None
            if state is None:
                state = UserState(user)
            yield state
            after = state.to_plain()
            text = fastjson.dumps(after)
            if text != before and (before is not None or after != UserState(user).to_plain()):
                fsutil.atomic_write(path, locked=True, data=text.encode() + b"\n")

    def delete(self, user: str) -> bool:
        path = self._file(user)
        self._dirs()
        with fsutil.FileLock(f"{self.paths.locks_dir}/{user}.lock", self.clock, self.lock_timeout):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            fsutil.fsync_dir(self.paths.users_dir)
            return True

    def users(self) -> list[str]:
        self._dirs()
        names = []
        for entry in os.listdir(self.paths.users_dir):
            if entry.endswith(".json") and not entry.startswith("."):
                names.append(entry[: -len(".json")])
        return sorted(names)

    # --- operations (see ``Store``): today's rules, each under one lock ---

    def view(self, user: str, now: float, binding: Binding | None = None) -> LoginView | None:
        st = self.load(user)
        if st is None:
            return None
        trusted = False
        if binding is not None and st.enrolled and st.devices:
            from pam_twofa import trust

            trusted = trust.find(st, binding, now) is not None
        return LoginView(enrolled=st.enrolled, digits=st.digits, email=bool(st.email),
                         email_changed_at=st.email_changed_at, first_seen=st.first_seen,
                         enrolled_at=st.enrolled_at, locked_until=st.locked_until,
                         suspended=st.suspended is not None, trusted=trusted)

    def grace_start(self, user: str, now: float, count_enrollment: bool = False) -> float:
        st = self.load(user)
        starts = [t for t in (st.first_seen if st else None,
                              st.enrolled_at if st and st.enrolled and count_enrollment
                              else None)
                  if t is not None]
        if starts:
            return min(starts)
        with self.update(user) as locked:
            if locked.first_seen is None:
                locked.first_seen = now
            return locked.first_seen

    def check_code(self, user: str, answer: str, policy: Policy, now: float,
                   binding: Binding | None = None) -> Verdict:
        from pam_twofa import verify

        with self.update(user) as st:
            verdict = verify.verify(st, answer, policy, now)
            if binding is not None and verdict.reason == "ok":
                from pam_twofa import trust

                verdict.offer_trust = trust.find(st, binding, now) is None
        return verdict

    def skip_trusted(self, user: str, binding: Binding, now: float,
                     ) -> tuple[str, float] | None:
        from pam_twofa import trust

        with self.update(user) as st:
            return trust.use(st, binding, now)

    def add_trusted(self, user: str, binding: Binding, policy: Policy, now: float,
                    ) -> tuple[dict[str, Any], str | None] | None:
        from pam_twofa import trust

        with self.update(user) as st:
            if not st.enrolled:
                return None
            return trust.add(st, binding, policy.trusted_devices, now), st.email

    def emergency_reserve(self, user: str, policy: Policy, code: str, now: float,
                          ) -> tuple[Verdict | None, str]:
        from pam_twofa import emergency

        with self.update(user) as st:
            return emergency.reserve(st, policy, code, now), st.email or ""

    def emergency_check(self, user: str, answer: str, policy: Policy, now: float) -> Verdict:
        from pam_twofa import emergency

        with self.update(user) as st:
            verdict: Verdict = emergency.check_sealed(st, answer, policy, now)
        return verdict

    def enroll_inline(self, user: str, secret: str, answer: str, policy: Policy,
                      now: float) -> tuple[str, list[str]]:
        from pam_twofa import inline

        with self.update(user) as st:
            return inline.confirm(st, secret, answer, policy, now)

    def status(self, user: str, now: float) -> dict[str, Any]:
        from pam_twofa import enrollment

        return enrollment.status(self.load(user), now)

    def begin_enrollment(self, user: str, proof: str | None, policy: Policy,
                         now: float) -> tuple[str, str | None]:
        from pam_twofa import enrollment

        with self.update(user) as st:
            return enrollment.begin(st, proof, policy, now)

    def confirm_enrollment(self, user: str, code: str, policy: Policy, now: float,
                           ) -> tuple[str, list[str], dict[str, Any]]:
        from pam_twofa import enrollment

        with self.update(user) as st:
            return enrollment.confirm(st, code, policy, now)

    def new_recovery_codes(self, user: str, proof: str, policy: Policy, now: float,
                           ) -> tuple[str, list[str]]:
        from pam_twofa import enrollment, recovery

        with self.update(user) as st:
            result = enrollment.check_code(st, proof, policy, now)
            return result, (recovery.replace(st) if result in ("ok", "recovery") else [])

    def disable(self, user: str, proof: str, policy: Policy, now: float) -> str:
        from pam_twofa import enrollment

        with self.update(user) as st:
            result = enrollment.check_code(st, proof, policy, now)
            if result in ("ok", "recovery"):
                enrollment.deactivate(st)
        return result

    def provision(self, user: str, secret: str, policy: Policy, now: float,
                  codes: list[str], *, replace: bool = True, digits: int | None = None,
                  period: int | None = None, algorithm: str | None = None,
                  ) -> dict[str, Any] | None:
        from pam_twofa import enrollment

        with self.update(user) as st:
            return enrollment.provision(st, secret, policy, now, codes, replace=replace,
                                        digits=digits, period=period, algorithm=algorithm)

    def reset_recovery_codes(self, user: str) -> list[str] | None:
        from pam_twofa import recovery

        if self.load(user) is None:
            return None
        with self.update(user) as st:
            return recovery.replace(st) if st.enrolled else None

    def devices(self, user: str, now: float) -> list[dict[str, Any]]:
        from pam_twofa import trust

        return trust.listing(self.load(user), now)

    def revoke_devices(self, user: str, device_id: str | None) -> list[str] | None:
        from pam_twofa import trust

        if self.load(user) is None:
            return None
        with self.update(user) as st:
            return trust.revoke(st, device_id)

    def unlock(self, user: str) -> bool:
        from pam_twofa import verify

        if self.load(user) is None:
            return False
        with self.update(user) as st:
            verify.unlock(st)
        return True
