"""What every ``twofa-admin`` command works with: paths, clock, store, policy, log.

Each command is a small function over the library; errors are caught once, in
``common.run``. ``--policy`` and ``--state-dir`` name the same files as the
module's ``policy=`` and ``state_dir=`` arguments.
"""

from __future__ import annotations

import click

from pam_twofa import log
from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.paths import Paths
    from pam_twofa.policy import Policy
    from pam_twofa.store import Store

PROG = "twofa-admin"


class Admin:
    """What every admin command works with: paths, clock, store, policy, log."""

    def __init__(self, paths: Paths, clock: Clock | None = None) -> None:
        self.paths = paths
        self.clock = clock or Clock()
        self.files = FileStore(paths, self.clock)  # this host's state directory
        self._store: Store | None = None
        self._policy: Policy | None = None

    @property
    def store(self) -> Store:
        """Where the commands act: where logins do (the policy in force, the last
        valid one while the file has an error): this host's files, or with
        ``store.backend: postgresql`` the fleet database through
        ``store.postgresql.admin_dsn``."""
        if self._store is None:
            from pam_twofa import policyfile
            from pam_twofa.errors import PolicyError

            self._store = self.files
            try:
                in_force = policyfile.load_in_force(self.paths).policy
            except PolicyError:  # no valid policy ever: logins fail, the files are all
                return self._store
            if in_force.store.backend == "postgresql":
                from pam_twofa.errors import UsageError
                from pam_twofa.fleet.adminstore import FleetAdminStore

                dsn = in_force.store.postgresql.admin_dsn
                if not dsn:
                    raise UsageError("store.backend is postgresql: set store.postgresql."
                                     "admin_dsn (a twofa_admin role) in the policy")
                self._store = FleetAdminStore(dsn)
        return self._store

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            from pam_twofa import policyfile

            self._policy = policyfile.load(self.paths)
        return self._policy

    def audit(self, action: str, user: str, **fields: object) -> None:
        """One authpriv line per change, like the module's."""
        import os

        sink = log.SyslogSink(f"twofa-admin({action})", self.paths.log_socket,
                              tag=log.TAG_ADMIN)
        sink.log(log.NOTICE, "", user=user, by_uid=os.getuid(), **fields)
        sink.close()


pass_admin = click.make_pass_decorator(Admin)
