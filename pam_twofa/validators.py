"""Validators of policy values: one class per kind of value, each with its default
and its one-line doc (``schema`` puts them in its table).

Each raises ``Invalid`` with the problem; the loader adds file and line. Not on
the login path: only loaded when the policy changed.
"""

from __future__ import annotations

from pam_twofa.policy import NameSet

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pam_twofa.policy import Network


class Invalid(ValueError):
    """A value the schema refuses; the loader adds file and line (of the list item
    ``index`` when one is named)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class Check:
    """One key's validator and default."""

    def __init__(self, default: Any, doc: str) -> None:
        self.default = default
        self.doc = doc

    def __call__(self, value: object) -> Any:
        raise NotImplementedError


class Int(Check):
    def __init__(self, default: int | None, lo: int, hi: int, doc: str, null: bool = False):
        super().__init__(default, doc)
        self.lo, self.hi, self.null = lo, hi, null

    def __call__(self, value: object) -> int | None:
        if value is None and self.null:
            return None
        if type(value) is not int:
            raise Invalid(f"must be a whole number from {self.lo} to {self.hi}")
        if not self.lo <= value <= self.hi:
            raise Invalid(f"must be from {self.lo} to {self.hi}, not {value}")
        return value


class Num(Int):
    def __call__(self, value: object) -> Any:
        if type(value) is float and value == value:
            if not self.lo <= value <= self.hi:
                raise Invalid(f"must be from {self.lo} to {self.hi}, not {value}")
            return value
        return super().__call__(value)


class Bool(Check):
    def __init__(self, default: bool | None, doc: str, null: bool = False) -> None:
        super().__init__(default, doc)
        self.null = null

    def __call__(self, value: object) -> bool | None:
        if value is None and self.null:
            return None
        if type(value) is not bool:
            raise Invalid("must be true, false or null" if self.null else "must be true or false")
        return value


class Choice(Check):
    def __init__(self, default: str, choices: tuple[str, ...], doc: str) -> None:
        super().__init__(default, doc)
        self.choices = choices

    def __call__(self, value: object) -> str:
        if value not in self.choices or type(value) is not str:
            raise Invalid(f"must be one of {', '.join(self.choices)}, not {value!r}")
        return value


class Str(Check):
    def __call__(self, value: object) -> str | None:
        if value is None:
            return None
        if type(value) is not str or not value or any(ord(c) < 32 for c in value):
            raise Invalid("must be a non-empty one-line string or null")
        return value


class Names(Check):
    """A list of user/group names (or other plain tokens), kept as a ``NameSet``."""

    def __init__(self, default: tuple[str, ...], doc: str,
                 each: Callable[[str], str] | None = None, ordered: bool = False) -> None:
        super().__init__(tuple(default) if ordered else NameSet(default), doc)
        self.each = each
        self.ordered = ordered

    def __call__(self, value: object) -> Any:
        if value is None:
            return () if self.ordered else NameSet()
        if type(value) is not list:
            raise Invalid("must be a list")
        out: dict[str, None] = {}
        for item in value:
            if type(item) is not str or not item or any(c.isspace() or ord(c) < 32 for c in item):
                raise Invalid(f"must list plain names without spaces, not {item!r}")
            out[self.each(item) if self.each else item] = None
        return tuple(out) if self.ordered else NameSet(out)


class Overrides(Check):
    """A mapping of ``section``'s keys, each replacing the top-level one; the keys
    left out are the top-level's (checked by ``_overrides``, not called)."""

    def __init__(self, section: str, doc: str) -> None:
        super().__init__(None, doc)
        self.section = section


class Networks(Check):
    """A list of CIDRs where the code is not asked, compiled for ``pam_twofa.scope``.

    Strict like ``ipaddress`` with strict=True: host bits set is an error (a typo in
    the prefix length would silently widen or narrow the exemption). Every address
    family is kept in the IPv6 space, IPv4 as v4-mapped, so ::ffff:10.1.2.3 and
    10.1.2.3 are one address to the login. Refused: /0 (use ``enabled: false`` or
    the scope), an IPv6 network holding every IPv4 address without being v4-mapped
    (``::/64`` would exempt all of IPv4), a zone index.
    """

    def __init__(self, doc: str, null: bool = False) -> None:
        super().__init__(None if null else (), doc)
        self.null = null

    def __call__(self, value: object) -> tuple[Network, ...] | None:
        if value is None:
            return None if self.null else ()
        if type(value) is not list:
            raise Invalid("must be a list of networks (CIDR)")
        out: dict[str, Network] = {}
        for index, item in enumerate(value):
            net = network(item, index)
            out.setdefault(net[0], net)
        return tuple(out.values())


def network(item: object, index: int | None = None) -> Network:
    """One CIDR as (text, value, prefix length) in the IPv6 space (see ``Networks``)."""
    import ipaddress

    if type(item) is not str or "%" in item:
        raise Invalid(f"{item!r} is not an IP network (CIDR)", index)
    try:
        net = ipaddress.ip_network(item, strict=True)
    except ValueError:
        try:
            fixed = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise Invalid(f"{item!r} is not an IP network (CIDR)", index) from None
        raise Invalid(f"{item!r} has host bits set: did you mean {fixed}?", index) from None
    if net.prefixlen == 0:
        raise Invalid(f"{item!r} exempts every address: set services.NAME.enabled: false "
                      "or narrow mandatory instead", index)
    if isinstance(net, ipaddress.IPv6Network):
        mapped = net.network_address.ipv4_mapped
        if mapped is not None and net.prefixlen >= 96:  # written v4-mapped: IPv4 it is
            net4 = ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
            return str(net4), int(net.network_address), net.prefixlen
        if net.overlaps(ipaddress.IPv6Network("::ffff:0:0/96")):
            raise Invalid(f"{item!r} holds every IPv4 address (as ::ffff:0:0/96): list "
                          "IPv4 networks as such", index)
        return str(net), int(net.network_address), net.prefixlen
    return str(net), 0xFFFF00000000 | int(net.network_address), net.prefixlen + 96


def cidr(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise Invalid(f"{text!r} is not an IP network (CIDR)") from None


def server(text: str) -> str:
    _host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise Invalid(f"{text!r}: bad port")
    return text


class Conninfo(Str):
    """A libpq conninfo string without a password in it (the policy is not a secret
    store: client certificates, or ``passfile=`` naming a root-only file)."""

    def __call__(self, value: object) -> str | None:
        text = super().__call__(value)
        if text is None:
            return None
        import re

        if (re.search(r"(?:^|\s)password\s*=", text)
                or re.match(r"postgres(?:ql)?://[^/@]*:[^/@]*@", text)
                or re.search(r"[?&]password=", text)):
            raise Invalid("must not hold a password: use a client certificate, or "
                          "passfile= naming a file only root can read")
        return text


class Nested(Check):
    """A mapping of its own keys inside a section (``store.postgresql``), as a plain dict."""

    def __init__(self, checks: dict[str, Check], doc: str) -> None:
        super().__init__({k: c.default for k, c in checks.items()}, doc)
        self.checks = checks

    def __call__(self, value: object) -> Any:
        raise Invalid("is a mapping")  # validate() walks it with check_all

    def check_all(self, value: object, where: Callable[[tuple[str, ...]], int],
                  path: tuple[str, ...]) -> tuple[dict[str, Any], list[tuple[int, str]]]:
        name = ".".join(path)
        if value is None:
            value = {}
        if type(value) is not dict:
            return dict(self.default), [(where(path), f"{name} must be a mapping")]
        errors = [(where((*path, str(k))), f"unknown key {name}.{k} (known: "
                   f"{', '.join(self.checks)})") for k in value if k not in self.checks]
        out: dict[str, Any] = {}
        for key, check in self.checks.items():
            try:
                out[key] = check(value[key]) if key in value else check.default
            except Invalid as exc:
                errors.append((where((*path, key)), f"{name}.{key} {exc}"))
                out[key] = check.default
        return out, errors
