"""``twofa-admin report``: every account the policy requires, and where each stands.

Accounts come from NSS: every passwd entry (``getpwall``), every group's members and
every primary group (``getgrall``). Large LDAP/sssd set-ups often disable enumeration
(sssd ``enumerate = false``): ``getpwall`` then lists only local users. That shows as
a group named in the policy that ``getgrnam`` knows but enumeration did not list, or a
member (or a ``users`` entry) that is not among the enumerated users; those accounts
are looked up by name and reported, with a note that the report covers the listed
users and members only (users reached by a primary group alone cannot be found).
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.policy import Policy
    from pam_twofa.store import Store

BLOCKING = ("grace-over", "no-grace", "state-error")


@dataclass
class Accounts:
    """Users (name -> uid) and each user's groups, as far as NSS lets us see."""

    uids: dict[str, int] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    complete: bool = True
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, uid: int, groups: set[str]) -> None:
        self.uids[name] = uid
        self.groups.setdefault(name, set()).update(groups)


def policy_groups(policy: Policy) -> list[str]:
    m = policy.mandatory
    names = set(m.exempt_groups)
    if m.scope == "admins":
        names |= set(m.admin_groups)
    elif m.scope == "selected":
        names |= set(m.groups)
    return sorted(names)


def scan(policy: Policy, stored: list[str]) -> Accounts:
    acc = Accounts()
    gid_names: dict[int, str] = {}
    listed_groups = set()
    for g in grp.getgrall():
        gid_names.setdefault(g.gr_gid, g.gr_name)
        listed_groups.add(g.gr_name)
        for member in g.gr_mem:
            acc.groups.setdefault(member, set()).add(g.gr_name)
    members = dict(acc.groups)
    acc.groups = {}
    for pw in pwd.getpwall():
        if pw.pw_name in acc.uids:
            continue  # a second entry of one name: NSS answers with the first
        own = members.get(pw.pw_name, set())
        primary = gid_names.get(pw.pw_gid)
        acc.add(pw.pw_name, pw.pw_uid, own | ({primary} if primary else set()))
    wanted: list[tuple[str, str]] = []  # (user, why we look it up)
    for name in policy_groups(policy):
        try:
            g = grp.getgrnam(name)
        except KeyError:
            acc.notes.append(f"group {name} (named in the policy) is unknown to NSS")
            continue
        if name not in listed_groups:
            acc.complete = False
            acc.notes.append(f"group {name} is known to NSS but not enumerated")
        wanted += [(m, f"member of {name}") for m in g.gr_mem if m not in acc.uids]
    if policy.mandatory.scope == "selected":
        wanted += [(u, "listed in mandatory.users") for u in policy.mandatory.users
                   if u not in acc.uids]
    wanted += [(u, "has 2FA state") for u in stored if u not in acc.uids]
    from pam_twofa.accounts import lookup

    for name, why in wanted:
        if name in acc.uids:
            continue
        account = lookup(name)
        if account is None:
            if why != "has 2FA state":
                acc.notes.append(f"{name} ({why}) is unknown to NSS")
            continue
        acc.complete = False
        acc.add(name, account.uid, set(account.groups))
    if not acc.complete:
        acc.notes.insert(0, "NSS enumeration is incomplete (e.g. sssd/LDAP with enumerate "
                            "off): this report covers the enumerated users and the members "
                            "of the policy's groups only; users who are in a group only by "
                            "their primary group cannot be found")
    return acc


def why_required(policy: Policy, name: str, uid: int, groups: set[str]) -> str:
    m = policy.mandatory
    if m.scope == "all":
        return "scope all"
    if m.scope == "admins":
        return "uid 0" if uid == 0 else "group " + ",".join(sorted(groups & set(m.admin_groups)))
    if name in m.users:
        return "mandatory.users"
    return "group " + ",".join(sorted(groups & set(m.groups)))


def standing(policy: Policy, state: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """A required user's status from its ``Store.standings`` row (None: no state):
    enrolled, grace (until), grace-not-started, grace-over, no-grace (mode deny or
    grace_days 0), inline; lock and suspension."""
    row: dict[str, Any] = {"status": "", "grace_until": None, "locked_until": None,
                           "suspended": False, "last_login": None}
    if state is not None:
        row["locked_until"] = state["locked_until"]
        row["suspended"] = state["suspended"]
        row["last_login"] = state["last_success"]
    e = policy.enrollment
    if state is not None and state["enrolled"]:
        row["status"] = "enrolled"
    elif e.mode == "inline":
        row["status"] = "inline"
    elif e.mode == "deny" or e.grace_days == 0:
        row["status"] = "no-grace"
    elif state is None or state["first_seen"] is None:
        row["status"] = "grace-not-started"
    else:
        until = state["first_seen"] + e.grace_days * 86400
        row["grace_until"] = until
        row["status"] = "grace" if now < until else "grace-over"
    return row


def build(policy: Policy, store: Store, now: float) -> dict[str, Any]:
    """The report: NSS's accounts against ``store.standings`` (one read of every
    user's state: the files, or one query on the fleet)."""
    states = store.standings(now)
    acc = scan(policy, sorted(states))
    rows = []
    for name in sorted(acc.uids):
        uid, groups = acc.uids[name], acc.groups.get(name, set())
        if not policy.mandatory.requires(name, uid, frozenset(groups)):
            continue
        state = states.get(name)
        if state is not None and "error" in state:
            row = {"status": "state-error", "error": state["error"], "grace_until": None,
                   "locked_until": None, "suspended": False, "last_login": None}
        else:
            row = standing(policy, state, now)
        row.update(user=name, uid=uid, required_by=why_required(policy, name, uid, groups))
        row["blocked"] = (row["status"] in BLOCKING or row["locked_until"] is not None
                          or row["suspended"])
        rows.append(row)
    enrolled_not_required = sum(
        1 for n in set(states) - {r["user"] for r in rows} if n in acc.uids)
    return {"users": rows, "summary": summary(rows, enrolled_not_required),
            "enumeration": {"complete": acc.complete, "notes": acc.notes},
            "scope": policy.mandatory.scope}


def summary(rows: list[dict[str, Any]], others_with_state: int = 0) -> dict[str, int]:
    count = {s: sum(1 for r in rows if r["status"] == s)
             for s in ("enrolled", "grace", "grace-not-started", "inline")}
    return {"required": len(rows), "enrolled": count["enrolled"],
            "in_grace": count["grace"], "grace_not_started": count["grace-not-started"],
            "inline": count["inline"], "blocked": sum(1 for r in rows if r["blocked"]),
            "locked": sum(1 for r in rows if r["locked_until"] is not None),
            "suspended": sum(1 for r in rows if r["suspended"]),
            "not_required_with_state": others_with_state}


def summary_line(s: dict[str, int]) -> str:
    """``required 42, enrolled 37 (88%), in grace 3, blocked 2`` (+ what else is non-zero)."""
    pct = round(100 * s["enrolled"] / s["required"]) if s["required"] else 0
    text = (f"required {s['required']}, enrolled {s['enrolled']} ({pct}%), "
            f"in grace {s['in_grace']}, blocked {s['blocked']}")
    if s["grace_not_started"]:
        text += f", not seen yet {s['grace_not_started']}"
    if s["inline"]:
        text += f", inline enrollment {s['inline']}"
    return text
