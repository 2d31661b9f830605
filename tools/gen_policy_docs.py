#!/usr/bin/env python3
"""Generate the policy reference from ``pam_twofa.schema``: one table, two documents.

Writes ``doc/policy.reference.yaml`` (every key commented out with its default
and its one-line doc; the package installs it as an example file,
/usr/share/doc/libpam-twofa/examples/policy.reference.yaml) and the key reference
between the GENERATED markers of ``doc/man/pam-twofa-policy.5.scd``. Run it after
changing the schema; ``--check`` exits 1 when a committed file is out of date (a
test runs it), so the reference and the man page cannot drift from the code.

The conffile, ``etc/pam-twofa/policy.yaml``, is short and written by hand: a
generated conffile would change with every reworded doc line, and each change
stops a non-interactive ``apt-get -y`` upgrade at a conffile prompt.

Uncommenting: each setting line starts with a single ``#``; prose lines start
with ``##``. Removing one leading ``#`` from every line (``sed 's/^#//'``) gives
valid YAML that sets every key to its default.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pam_twofa import policy, schema, validators, verify  # noqa: E402

REFERENCE_FILE = Path("doc/policy.reference.yaml")
MAN_FILE = Path("doc/man/pam-twofa-policy.5.scd")
BEGIN = "; BEGIN GENERATED KEYS: tools/gen_policy_docs.py writes from here to END"
END = "; END GENERATED KEYS"
INDENT = "   "

# One short header per section (the keys' own docs come from the schema).
SECTION_DOCS: dict[str, str] = {
    "mandatory": (
        "Who must use 2FA. Scope is decided from the user's own groups; the exemptions "
        "win over every scope. A user who is not enrolled and not required is ignored "
        "(PAM_IGNORE); an enrolled user is always asked for a code."
    ),
    "enrollment": "Users in scope who are not enrolled yet.",
    "totp": (
        "TOTP parameters. digits, period and algorithm apply to new enrollments (each "
        "user keeps those of their own enrollment); window applies to every login."
    ),
    "lockout": (
        "Progressive lockout. max_failures wrong codes within interval_seconds lock the "
        "user for lock_seconds; until the next right code, each further wrong code locks "
        "again for twice as long, up to max_lock_seconds. Attempts while locked are "
        "refused without checking the code and are not counted, nor are replays of a "
        "used code or empty answers. The max_consecutive_failures-th wrong code since "
        "the last right one suspends the second factor (every code refused, log "
        "reason=suspended, a mail to the security email) until twofa-admin unlock: "
        "whoever gets there knows the password. With the defaults an attacker who knows "
        "the password gets at most {guesses} guesses in all."
    ),
    "trusted_devices": "Skipping the code on a device the user chose to trust.",
    "smtp": "The mail server for security email (emergency codes and notifications).",
    "emergency": (
        "Emergency codes sent to the user's verified security email. With store.backend "
        "postgresql the fleet database makes each code with its own copy of code_digits, "
        "ttl_seconds, max_sends_per_hour and after_email_change_hours (twofa-admin fleet "
        "init copies them), counts the sends of all hosts together, and takes a code only "
        "on the host that mailed it; enabled and smtp stay this host's."
    ),
    "notifications": "Security mails to the user when something happens to their 2FA.",
    "clock": "The clock check (twofa-clockcheck): TOTP needs the host clock in sync.",
    "store": (
        "Where user state lives. file: this host's state directory. postgresql: the fleet "
        "database, reached through this host's twofa-fleetd(8); failmode safe is refused "
        "with it. See the README's \"Fleet store (PostgreSQL)\"."
    ),
    "exempt_networks": (
        "Networks whose clients are not asked for a code, enrolled or not: the password "
        "alone decides there. The address is the first field of SSH_CONNECTION under sshd, "
        "else PAM_RHOST; a name is never resolved and never matches. IPv4 and IPv6; a "
        "v4-mapped address (::ffff:10.1.2.3) is the IPv4 one. Refused: host bits set, /0, "
        "an IPv6 network holding all of IPv4. Anyone on such a network who has the password "
        "is in: a compromised machine there, a VPN or NAT concentrator, or a service that "
        "takes PAM_RHOST from its client."
    ),
    "services.NAME": (
        "Rules for one PAM service (NAME: a file of /etc/pam.d as the program names it, "
        "lower case, e.g. sshd, sudo, su, login). Every key is optional; one left out (or "
        "null) is the top-level setting."
    ),
    "failmode": (
        "Internal errors (corrupt state, unreadable state directory, invalid policy): "
        "secure refuses the login, safe ignores the module (PAM_IGNORE). The module "
        "argument failmode= overrides this."
    ),
}

POLICY_HEADER = """\
## pam-twofa policy reference: every key, commented out, with its default.
##
## A key left out keeps its default, so this file as it is is the built-in
## policy. The policy in force is /etc/pam-twofa/policy.yaml: copy the lines you
## need there (a key with its section line) and uncomment them. The file is
## parsed strictly: an unknown key, a wrong type or a value out of range makes
## the whole file invalid, reported as FILE:LINE. Check it before relying on it:
##
##     twofa-admin policy check
##
## The policy must be owned by root and not writable by group or others. Edits
## apply at the next login. Reference: pam-twofa-policy(5).
##
## (Generated from the code by tools/gen_policy_docs.py.)
"""


def yaml_scalar(value: Any) -> str:
    """``value`` as YAML flow text that loads back to the same value."""
    import yaml

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, policy.NameSet):
        value = value.names()
    if isinstance(value, frozenset | tuple | list):
        items = sorted(value) if isinstance(value, frozenset) else list(value)
        return "[" + ", ".join(yaml_scalar(v) for v in items) + "]"
    text = str(value)
    if yaml.safe_load(text) == text and text.strip() == text and "#" not in text:
        return text
    return json.dumps(text)


def kind(check: schema.Check) -> str:
    """What values a key takes, for the man page."""
    if isinstance(check, validators.Int):
        word = "number" if isinstance(check, validators.Num) else "whole number"
        text = f"{word} from {check.lo} to {check.hi}"
        return text + " or null" if check.null else text
    if isinstance(check, validators.Bool):
        return "true, false or null" if check.null else "true or false"
    if isinstance(check, validators.Choice):
        return "one of " + ", ".join(check.choices)
    if isinstance(check, validators.Str):
        return "string or null"
    if isinstance(check, validators.Names):
        return "list of names" if check.each is None else "list"
    if isinstance(check, validators.Networks):
        return "list of networks (CIDR)" + (" or null" if check.null else "")
    if isinstance(check, validators.Overrides):
        return f"mapping of {check.section} keys, or null"
    raise TypeError(f"no description for {type(check).__name__}")


TOP_LEVEL = ("exempt_networks", "failmode")  # keys outside any section


def sections() -> list[tuple[str, dict[str, validators.Check]]]:
    """(section, {key: check}) in schema order, then the per-service keys; the
    top-level keys last, each as its own section."""
    out: list[tuple[str, dict[str, validators.Check]]] = [
        (name, checks) for name, (_cls, checks) in schema.SCHEMA.items()
    ]
    out.append(("services.NAME", schema.SERVICE))
    out.append(("exempt_networks", {"exempt_networks": schema.EXEMPT_NETWORKS}))
    out.append(("failmode", {"failmode": schema.FAILMODE}))
    missing = [name for name, _ in out if name not in SECTION_DOCS]
    if missing:
        raise SystemExit(f"gen_policy_docs: add a header for {', '.join(missing)} "
                         "to SECTION_DOCS in tools/gen_policy_docs.py")
    return out


def section_doc(name: str) -> str:
    guesses = verify.guesses_per_year(schema.defaults().lockout)
    return SECTION_DOCS[name].format(guesses=guesses)


def wrap(text: str, prefix: str, width: int = 79) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=prefix, subsequent_indent=prefix,
                         break_on_hyphens=False)


def policy_yaml() -> str:
    lines = POLICY_HEADER.splitlines()
    for name, checks in sections():
        lines.append("")
        lines.extend(wrap(section_doc(name), "## "))
        top = name in TOP_LEVEL
        per_service = name == "services.NAME"
        if per_service:  # prose: uncommented, the file has no service (the default)
            lines.extend(wrap(SERVICES_EXAMPLE_INTRO, "## "))
            lines.extend(f"##{line}" for line in SERVICES_EXAMPLE.splitlines())
            lines.append("## Every key of a service, and what null (left out) means:")
        elif not top:
            lines.append(f"#{name}:")
        indent = INDENT * 2 if per_service else "" if top else INDENT
        settings = []
        for key, check in checks.items():
            if isinstance(check, validators.Nested):
                settings.append((f"{indent}{key}:", check.doc))
                settings += [(f"{indent}{INDENT}{k}: {yaml_scalar(c.default)}", c.doc)
                             for k, c in check.checks.items()]
                continue
            settings.append((f"{indent}{key}: {yaml_scalar(check.default)}", check.doc))
        width = max(len(s) for s, _ in settings)
        for setting, doc in settings:
            lines.append(f"{'##' if per_service else '#'}{setting.ljust(width)}  # {doc}")
        if per_service:
            lines.append("#services: {}")
    return "\n".join(lines) + "\n"


SERVICES_EXAMPLE_INTRO = (
    "For example: console login as break-glass (no code), trusted devices on sshd only, "
    "sudo asking admins only, and no exemption for sudo from the office network:"
)
SERVICES_EXAMPLE = """\
    trusted_devices: {enabled: false}
    exempt_networks: [192.0.2.0/24]
    services:
      login: {enabled: false}
      sshd: {trusted_devices: true}
      sudo:
        mandatory: {scope: admins}
        exempt_networks: []"""


def scd_escape(text: str) -> str:
    """Text safe in scdoc: ``*`` and a word-leading ``_`` would start formatting."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace(" _", " \\_")


def man_keys() -> str:
    out: list[str] = []
    for name, checks in sections():
        out.append(f"## {name}")
        out.append("")
        out.append(scd_escape(section_doc(name)))
        out.append("")
        flat: list[tuple[str, schema.Check]] = []
        for key, check in checks.items():
            if isinstance(check, schema.Nested):
                flat += [(f"{key}.{k}", c) for k, c in check.checks.items()]
            else:
                flat.append((key, check))
        for key, check in flat:
            out.append(f"*{key}* ({scd_escape(kind(check))}; "
                       f"default: {scd_escape(yaml_scalar(check.default))})")
            doc = check.doc[:1].upper() + check.doc[1:]
            out.append("\t" + scd_escape(doc.rstrip(".") + "."))
            out.append("")
    return "\n".join(out)


def man_page(current: str) -> str:
    """``current`` with the text between the markers replaced by the key reference."""
    try:
        head, rest = current.split(BEGIN + "\n", 1)
        _old, tail = rest.split(END + "\n", 1)
    except ValueError:
        raise SystemExit(f"gen_policy_docs: {MAN_FILE} lacks the lines\n{BEGIN}\n{END}") from None
    return f"{head}{BEGIN}\n{man_keys()}\n{END}\n{tail}"


def outputs(root: Path) -> dict[Path, str]:
    """Each generated file (under ``root``) and the text it should have."""
    man = root / MAN_FILE
    return {root / REFERENCE_FILE: policy_yaml(),
            man: man_page(man.read_text(encoding="utf-8"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="tree to write into")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in outputs(args.root).items():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old == text:
            continue
        if args.check:
            stale += 1
            sys.stderr.writelines(difflib.unified_diff(
                old.splitlines(True), text.splitlines(True), str(path), f"{path} (generated)"))
            print(f"{path}: out of date; run python3 tools/gen_policy_docs.py",
                  file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
