"""Per-service rules and exempt networks: what the policy says for one login, given
its PAM service and its client's address.

``effective(policy, service, client)`` is pure: the service's rules
(``services.NAME``: enabled, mandatory, trusted_devices, exempt_networks, each
left out meaning the top-level setting) and whether the client's address is in
an exempt network. ``core`` calls it once per login, and only when the policy
has ``services`` or ``exempt_networks``: a plain login never imports this module.

Cheap and offline: the networks were compiled at policy load into integers in
the IPv6 space (``validators.Networks``; IPv4 as v4-mapped, so ::ffff:10.1.2.3
and 10.1.2.3 are one address), the address is parsed by the C module _socket
(~0.1 ms; ``ipaddress`` costs ~2.8 ms) and matched with int arithmetic. A name
that is not an IP address never matches: nothing is ever resolved.
"""

from __future__ import annotations

from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.policy import MandatoryPolicy, Network, Policy

_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


class Rules(Record):
    """The policy for one login's service and client."""

    enabled: bool  # false: the module has no say on this service (PAM_IGNORE)
    mandatory: MandatoryPolicy  # the service's, else the top-level one
    trusted_devices: bool  # trust offered and honoured on this service
    address: str | None = None  # the client's IP (canonical), when a network was checked
    network: str | None = None  # the exempt network holding it: no code asked

    def applied(self, policy: Policy) -> Policy:
        """``policy`` as this service sees it (its mandatory, its trust switch)."""
        trust = policy.trusted_devices
        if trust.enabled != self.trusted_devices:
            trust = trust.replace(enabled=self.trusted_devices)
        return policy.replace(mandatory=self.mandatory, trusted_devices=trust)


def client_of(ssh_connection: str | None, rhost: str | None) -> str | None:
    """The client's address as given: the first field of SSH_CONNECTION (which sshd
    puts in the PAM environment: the peer of the TCP connection), else PAM_RHOST
    (what the program says; under sshd with UseDNS it may be a name). The same
    rule as ``trust.client_ip``."""
    if ssh_connection:
        return ssh_connection.split(" ", 1)[0]
    return rhost


def address(text: str | None) -> tuple[str, int] | None:
    """(canonical text, value in the IPv6 space) of an IP address, else None.

    Strict (inet_pton): no DNS name, no shorthand like 10.1, no leading zeros, no
    zone index. A v4-mapped IPv6 address is the IPv4 address (the text too).
    """
    if not text:
        return None
    import _socket

    text = text.strip()
    family = _socket.AF_INET6 if ":" in text else _socket.AF_INET
    try:
        packed = _socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    if family == _socket.AF_INET:
        packed = _V4_MAPPED + packed
    if packed[:12] == _V4_MAPPED:
        shown = str(_socket.inet_ntop(_socket.AF_INET, packed[12:]))
    else:
        shown = str(_socket.inet_ntop(_socket.AF_INET6, packed))
    return shown, int.from_bytes(packed, "big")


def exempt_network(value: int, networks: tuple[Network, ...]) -> str | None:
    """The first of ``networks`` holding the address ``value``, or None."""
    for text, net, prefix in networks:
        shift = 128 - prefix
        if value >> shift == net >> shift:
            return text
    return None


def effective(policy: Policy, service: str, client: str | None) -> Rules:
    """The rules for a login on ``service`` from ``client`` (see ``client_of``)."""
    rules = None
    for candidate in policy.services:
        if candidate.name == service:
            rules = candidate
            break
    if rules is None:
        networks = policy.exempt_networks
        base = Rules(enabled=True, mandatory=policy.mandatory,
                     trusted_devices=policy.trusted_devices.enabled)
    else:
        networks = (rules.exempt_networks if rules.exempt_networks is not None
                    else policy.exempt_networks)
        trust = rules.trusted_devices
        base = Rules(enabled=rules.enabled, mandatory=rules.mandatory or policy.mandatory,
                     trusted_devices=policy.trusted_devices.enabled if trust is None else trust)
    if not base.enabled or not networks:
        return base
    found = address(client)
    if found is None:
        return base
    return base.replace(address=found[0], network=exempt_network(found[1], networks))
