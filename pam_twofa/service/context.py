"""What an operation of the enrollment service works with: who asks, and the world.

The caller is identified only by the kernel: SO_PEERCRED uid -> passwd name
(``identify``). Every operation acts on that user's own record; no request names
a user.
"""

from __future__ import annotations

from pam_twofa import log
from pam_twofa.errors import UnknownUser
from pam_twofa.filestore import FileStore
from pam_twofa.record import Record
from pam_twofa.store import fleet_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.accounts import Account
    from pam_twofa.clock import Clock
    from pam_twofa.paths import Paths
    from pam_twofa.policy import Policy
    from pam_twofa.store import Store


class Caller(Record):
    """Who is asking, as the kernel says (SO_PEERCRED) and NSS names it."""

    uid: int
    pid: int
    account: Account

    @property
    def name(self) -> str:
        return self.account.name


class Context:
    """What handlers work with: paths, clock, store, the current policy, the log."""

    def __init__(self, paths: Paths, clock: Clock) -> None:
        self.paths = paths
        self.clock = clock
        self.files = FileStore(paths, clock)  # this host's state directory
        self._fleet: tuple[tuple[str, float], Store] | None = None

    @property
    def store(self) -> Store:
        """The store the current policy names (``store.fleet_socket``, the login's
        rule): this host's files, or the fleet through ``twofa-fleetd``
        (``FleetHostStore``, which keeps the sealed code of an address being
        verified in this host's files)."""
        fleet = fleet_socket(self.policy)
        if fleet is None:
            return self.files
        if self._fleet is None or self._fleet[0] != fleet:
            from pam_twofa.fleet.hoststore import FleetHostStore

            self._fleet = fleet, FleetHostStore(*fleet, self.files)
        return self._fleet[1]

    @property
    def policy(self) -> Policy:
        """The policy as it is now (cached compiled; an edit is picked up at once)."""
        from pam_twofa import policyfile

        return policyfile.load(self.paths)

    def audit(self, caller: Caller, op: str, result: str, **fields: object) -> None:
        """One authpriv line per change or refusal; never a code or secret."""
        sink = log.SyslogSink("pam_twofa(enroll)", self.paths.log_socket,
                              tag=log.TAG_ENROLL_SERVICE)
        priority = log.INFO if result == "ok" else log.NOTICE
        sink.log(priority, "", user=caller.name, uid=caller.uid, op=op, result=result, **fields)
        sink.close()


def identify(uid: int, pid: int) -> Caller:
    """The caller for a peer uid; a uid without a (consistent) passwd entry is refused."""
    import pwd

    from pam_twofa import accounts

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise UnknownUser(f"uid {uid} has no passwd entry") from None
    account = accounts.lookup(name)
    if account is None or account.uid != uid:
        # two entries sharing a name: never act on another uid's record
        raise UnknownUser(f"uid {uid}: the name {name!r} resolves to another uid")
    return Caller(uid=uid, pid=pid, account=account)
