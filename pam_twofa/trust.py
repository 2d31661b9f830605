"""Trusted devices: skip the code on a device the user trusted, bound to IP, SSH key
and PAM service.

Peers keyed trust on the client IP alone (useless behind NAT, spoofable on a shared
network, duplicates). A record here binds the client IP and, when the login used an
SSH public key first (``AuthenticationMethods publickey,keyboard-interactive``), that
key's SHA256 fingerprint, and the PAM service the trust was given on: a record made
on sshd is never honoured by, say, an IMAP server's service, which sets PAM_RHOST
and nothing else an attacker could not choose. A later login skips the code only
when every bound part matches, the record has not expired, the policy still allows
trust from there, and the user is neither locked out nor suspended (such a user gets
the code prompt, which reports it: trust never lifts a lockout).

Only reached when ``trusted_devices.enabled``, and even then cheap: the C modules
_socket, binascii and _sha256 (~0.2 ms) instead of ipaddress, base64 and hashlib
(~8 ms); ipaddress only when ``networks`` is set. Records live in the
user's state (``devices``): ``{id, created, expires, ip, key, service, last_used}``
(times in epoch seconds, ``key`` the fingerprint or None). Records from before the
service was bound (state version 1) are bound to ``sshd`` (see ``state``).
"""

from __future__ import annotations

from pam_twofa import verify
from pam_twofa.login import Decision, Outcome, client_of, format_time, ip_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from pam_twofa.login import Clock, Notifier, Request
    from pam_twofa.policy import Policy, TrustPolicy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store

TRUST_PROMPT = "Trust this device for {days} (no code from it until then)? [y/N]: "
YES = ("y", "yes")


def key_fingerprint(auth_info: str | None) -> str | None:
    """The SHA256 fingerprint of the first public key in SSH_AUTH_INFO_0, else None.

    SSH_AUTH_INFO_0 has one line per completed method (``publickey ssh-ed25519 AAAA…``).
    Printed as OpenSSH does: "SHA256:" + unpadded base64 of sha256(decoded key blob).
    Never raises: garbage gives None (then no key is bound, and a key-bound record
    cannot match).
    """
    if not isinstance(auth_info, str) or "publickey" not in auth_info:
        return None
    import binascii

    for line in auth_info.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "publickey":
            continue
        try:
            blob = binascii.a2b_base64(parts[2].encode("ascii"), strict_mode=True)
        except (ValueError, binascii.Error, UnicodeEncodeError):
            return None
        if len(blob) < 4:
            return None
        digest = binascii.b2a_base64(_sha256(blob), newline=False).decode().rstrip("=")
        return f"SHA256:{digest}"
    return None


def _sha256(data: bytes) -> bytes:
    try:  # the builtin module: ~0.04 ms to import, hashlib (OpenSSL) ~2.5 ms
        from _sha256 import sha256
    except ImportError:  # another Python build
        from hashlib import sha256
    return bytes(sha256(data).digest())


def client_ip(ssh_connection: str | None, rhost: str | None) -> str | None:
    """The client's IP, canonical (``login.client_of``, ``login.ip_address``); None when
    it is not an IP address (PAM_RHOST may be a DNS name): no IP, no trust."""
    found = ip_address(client_of(ssh_connection, rhost))
    return found[0] if found else None


def in_networks(ip: str, networks: Iterable[str]) -> bool:
    """Whether ``ip`` is inside one of ``networks`` (empty: anywhere)."""
    if not networks:
        return True
    import ipaddress

    addr = ipaddress.ip_address(ip)
    for net in networks:
        network = ipaddress.ip_network(net, strict=False)
        if addr.version == network.version and addr in network:
            return True
    return False


class Binding:
    """What a record binds: the client IP, the key fingerprint (or None) and the
    PAM service."""

    def __init__(self, ip: str | None, key: str | None, service: str = "") -> None:
        self.ip = ip
        self.key = key
        self.service = service

    @classmethod
    def of(cls, request: Request) -> Binding:
        return cls(client_ip(request.ssh_connection, request.rhost),
                   key_fingerprint(request.ssh_auth_info), request.service)

    def allowed(self, policy: TrustPolicy) -> bool:
        """Whether the policy lets trust be offered to, or honoured for, this login."""
        if self.ip is None or not self.service:
            return False
        if policy.require_key and self.key is None:
            return False
        return in_networks(self.ip, policy.networks)

    def matches(self, record: dict[str, Any]) -> bool:
        return (record.get("ip") == self.ip and record.get("key") == self.key
                and record.get("service") == self.service)


def find(state: UserState, binding: Binding, now: float) -> dict[str, Any] | None:
    """The user's live record for this binding, or None."""
    for record in state.devices:
        expires = record.get("expires")
        if binding.matches(record) and isinstance(expires, (int, float)) and expires > now:
            return record
    return None


def use(state: UserState, binding: Binding, now: float) -> tuple[str, float] | None:
    """Under the user's lock: the matching live record's (id, expiry), its use
    recorded; None when revoked or expired since, not enrolled, locked or suspended
    (trust never lifts a lockout: the code prompt reports it)."""
    record = find(state, binding, now) if state.enrolled else None
    if record is None or verify.locked_until(state, now) is not None or verify.suspended(state):
        return None
    record["last_used"] = now
    state.last_trusted = now  # not last_success: no code was given
    return str(record.get("id")), float(record["expires"])


def skip(request: Request, user: str, binding: Binding, store: Store,
         clock: Clock) -> Decision | None:
    """A SUCCESS decision when this login comes from a device the user trusts, else None.

    The core calls it only when its unlocked read saw a matching record; the store
    re-checks under the lock (revoked or locked since?). Never in single-prompt mode
    (the code came with the password, see pamface: the core passes no binding).
    """
    used = store.skip_trusted(user, binding, clock.now())
    if used is None:
        return None
    device_id, expires = used
    request.conversation.info(f"Trusted device: no verification code needed "
                              f"(trusted until {format_time(expires)}).")
    return Decision(outcome=Outcome.SUCCESS, reason="trusted-device",
                    fields=(("device", device_id),))


def offer(request: Request, user: str, binding: Binding, policy: Policy, store: Store,
          clock: Clock, notifier: Notifier) -> tuple[tuple[str, Any], ...]:
    """After a right TOTP code from a device without a live record: ask whether to
    trust it (default no).

    Returns extra log fields (the new record's id) or ``()``. Asked outside the
    user's lock: a user thinking about the question must not block their other logins.
    """
    tp = policy.trusted_devices
    days = f"{tp.days} day" + ("s" if tp.days != 1 else "")
    answer = request.conversation.ask(TRUST_PROMPT.format(days=days), echo=True)
    if answer is None or answer.strip().lower() not in YES:
        return ()
    from pam_twofa.errors import FleetUnavailable, LockTimeout

    try:
        added = store.add_trusted(user, binding, policy, clock.now())
    except (LockTimeout, FleetUnavailable) as exc:  # the code was proven: the login
        # stands, the device is not trusted
        request.conversation.error("This device could not be trusted now; "
                                   "try again at your next login.")
        return (("trusted_device", exc.reason),)
    if added is None:  # reset meanwhile
        return ()
    record, email = added
    request.conversation.info(f"This device is trusted until {format_time(record['expires'])}.")
    fields: tuple[tuple[str, Any], ...] = (("trusted_device", record["id"]),)
    if email:  # tell the owner (best effort, bounded by the smtp timeout)
        label = f"{record['id']} ({binding.ip}" + (f", key {binding.key})" if binding.key
                                                   else ")")
        sent = notifier.notice("device_trusted", user, email, client=binding.ip,
                               now=record["created"], until=record["expires"], device=label)
        fields += (("notified", "yes" if sent else "no"),)
    return fields


def add(state: UserState, binding: Binding, policy: TrustPolicy,
        now: float) -> dict[str, Any]:
    """Add a record for ``binding``: drops expired ones and any for the same binding,
    then the oldest beyond ``max_per_user``."""
    import os

    kept = [r for r in state.devices
            if not binding.matches(r) and _num(r.get("expires")) > now]
    taken = {r.get("id") for r in kept}
    device_id = os.urandom(4).hex()
    while device_id in taken:
        device_id = os.urandom(4).hex()
    record: dict[str, Any] = {
        "id": device_id, "created": now, "expires": now + policy.days * 86400,
        "ip": binding.ip, "key": binding.key, "service": binding.service, "last_used": now,
    }
    kept.append(record)
    kept.sort(key=lambda r: _num(r.get("created")))
    state.devices = kept[-policy.max_per_user:]
    return record


def revoke(state: UserState, device_id: str | None) -> list[str]:
    """Remove one record (by id) or all (None); the ids removed."""
    if device_id is None:
        removed = [str(r.get("id")) for r in state.devices]
        state.devices = []
        return removed
    removed = [str(r.get("id")) for r in state.devices if r.get("id") == device_id]
    state.devices = [r for r in state.devices if r.get("id") != device_id]
    return removed


def listing(state: UserState | None, now: float) -> list[dict[str, Any]]:
    """The user's records for display, oldest first, each with ``expired``."""
    if state is None:
        return []
    rows = []
    for r in sorted(state.devices, key=lambda r: _num(r.get("created"))):
        rows.append({"id": r.get("id"), "ip": r.get("ip"), "key": r.get("key"),
                     "service": r.get("service"),
                     "created": r.get("created"), "expires": r.get("expires"),
                     "last_used": r.get("last_used"),
                     "expired": not _num(r.get("expires")) > now})
    return rows


def _num(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return 0.0
