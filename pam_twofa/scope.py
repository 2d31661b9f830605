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

from pam_twofa.login import ip_address
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.policy import MandatoryPolicy, Network, Policy

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


def exempt_network(value: int, networks: tuple[Network, ...]) -> str | None:
    """The first of ``networks`` holding the address ``value``, or None."""
    for text, net, prefix in networks:
        shift = 128 - prefix
        if value >> shift == net >> shift:
            return text
    return None


def effective(policy: Policy, service: str, client: str | None) -> Rules:
    """The rules for a login on ``service`` from ``client`` (``Request.client()``)."""
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
    found = ip_address(client)
    if found is None:
        return base
    return base.replace(address=found[0], network=exempt_network(found[1], networks))
