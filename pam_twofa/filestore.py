"""The default store: one JSON file per user (0600 in 0700, root-owned).

Each file is written atomically under a per-user flock (``fsutil``); every
operation of ``store.Store`` is one locked read-modify-write running the feature
modules' rules. ``load``/``update``/``delete`` serve admin paths, never a login.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from pam_twofa import fastjson, fsutil
from pam_twofa.errors import CorruptState
from pam_twofa.login import LoginView, validate_user_name
from pam_twofa.state import UserState
from pam_twofa.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pam_twofa.emergency import Issued
    from pam_twofa.login import Clock
    from pam_twofa.paths import Paths
    from pam_twofa.policy import Policy
    from pam_twofa.trust import Binding
    from pam_twofa.verify import Verdict

__all__ = ["FileStore"]


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

    def emergency_reserve(self, user: str, policy: Policy, now: float) -> Verdict | Issued:
        from pam_twofa import emergency

        with self.update(user) as st:
            return emergency.reserve(st, policy, now)

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

    def account(self, user: str, policy: Policy, now: float) -> dict[str, Any]:
        from pam_twofa import emergency, enrollment
        from pam_twofa.mail import security_email

        st = self.load(user)
        info = enrollment.status(st, now)
        info.update(security_email.masked(st, now),
                    grace_until=None if st is None else enrollment.grace_until(
                        policy, st.enrolled, st.first_seen),
                    pending=st is not None and enrollment.pending_secret(st, now) is not None,
                    emergency_held_until=None if st is None else emergency.held_until(
                        policy, st, now))
        return info

    def email_start(self, user: str, address: str, code: str, proof: str | None,
                    policy: Policy, now: float) -> str:
        from pam_twofa import enrollment
        from pam_twofa.mail import security_email

        with self.update(user) as st:
            def claim(proof: str | None) -> str:
                return "new" if proof is None else enrollment.check_code(st, proof, policy, now)

            return security_email.name_address(st, address, code, proof, policy, now,
                                               enrolled=st.enrolled, claim=claim)

    def email_confirm(self, user: str, code: str, policy: Policy, now: float,
                      ) -> dict[str, Any]:
        from pam_twofa import emergency
        from pam_twofa.mail import security_email

        with self.update(user) as st:
            problem, address = security_email.settle(st, code, now, enrolled=st.enrolled)
            old = None if address is None else security_email.change(st, address, now)
            return {"problem": problem, "old": old, "email": st.email,
                    "held_until": emergency.held_until(policy, st, now)}

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

    def set_email(self, user: str, address: str | None) -> bool:
        from pam_twofa.mail import mailer, security_email

        if address is not None:
            address = mailer.check_address(address)
        elif self.load(user) is None:
            return False
        with self.update(user) as st:
            security_email.set_by_admin(st, address)
        return True

    def security_email(self, user: str) -> str | None:
        st = self.load(user)
        return st.email if st is not None else None

    def standings(self, now: float) -> dict[str, dict[str, Any]]:
        from pam_twofa import verify
        from pam_twofa.errors import StateError

        out: dict[str, dict[str, Any]] = {}
        for user in self.users():
            try:
                st = self.load(user)
            except StateError as exc:
                out[user] = {"error": exc.message}
                continue
            if st is not None:
                out[user] = {"enrolled": st.enrolled, "first_seen": st.first_seen,
                             "locked_until": verify.locked_until(st, now),
                             "suspended": st.suspended is not None,
                             "last_success": st.last_success}
        return out
