"""Every file location pam-twofa uses, in one object passed to whoever needs it."""

from __future__ import annotations

from pam_twofa.record import Record

DEFAULT_POLICY = "/etc/pam-twofa/policy.yaml"
DEFAULT_STATE_DIR = "/var/lib/pam-twofa"
DEFAULT_SOCKET = "/run/pam-twofa/enroll.sock"
DEFAULT_LOG_SOCKET = "/dev/log"


class Paths(Record):
    """Locations; defaults < config < module arguments / command-line options."""

    policy: str = DEFAULT_POLICY
    state_dir: str = DEFAULT_STATE_DIR
    socket: str = DEFAULT_SOCKET
    log_socket: str = DEFAULT_LOG_SOCKET
    # True when ``policy`` was named explicitly: a missing file is then an error,
    # while a missing default file means the built-in defaults.
    policy_explicit: bool = False

    @property
    def users_dir(self) -> str:
        return self.state_dir + "/users"

    @property
    def locks_dir(self) -> str:
        return self.state_dir + "/locks"

    @property
    def cache_dir(self) -> str:
        return self.state_dir + "/cache"

    @property
    def policy_cache(self) -> str:
        return self.cache_dir + "/policy.marshal"

    @property
    def clock_status(self) -> str:
        return self.state_dir + "/clock.json"
