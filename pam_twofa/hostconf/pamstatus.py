"""Where pam-twofa is in each service's effective auth stack, and what is wrong there.

The finding that matters most: a pam_python pam-twofa line without the guard right
before it in the stack of a setuid program (``pamstack.SETUID_SERVICES``) lets a local
user run code as root through PATH or the working directory (issue 11). That is
CRITICAL; elsewhere a missing guard only costs an interpreter start per setcred.
"""

from __future__ import annotations

import os

from pam_twofa.errors import PamConfigError
from pam_twofa.hostconf import pamstack as ps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def previous(entries: list[ps.Entry], i: int) -> ps.Entry | None:
    """The entry before ``entries[i]`` in the same (sub)stack, if any."""
    depth = entries[i].depth
    for k in range(i - 1, -1, -1):
        if entries[k].depth == depth:
            return entries[k]
        if entries[k].depth < depth:
            return None
    return None


def origin(resolver: ps.Resolver, entry: ps.Entry) -> str:
    pam = resolver.file(entry.line.path)
    if ps.in_blocks(entry.line, ps.find_blocks(pam)):
        return "twofa-admin"
    if ps.managed_by_pam_auth_update(pam, entry.line):
        return "pam-auth-update"
    return "by hand"


def finding(resolver: ps.Resolver, name: str, entries: list[ps.Entry], i: int,
            guard: str) -> tuple[dict[str, Any], list[str], bool]:
    entry = entries[i]
    control = entry.line.control.text if entry.line.control else ""
    before = previous(entries, i)
    guarded = bool(before and ps.is_guard_line(before.line, guard))
    item = {"where": entry.describe(), "file": entry.line.path, "line": entry.line.first,
            "via": [v.where for v in entry.via], "control": control, "guarded": guarded,
            "written_by": origin(resolver, entry), "args": list(entry.line.args[1:])}
    found = problems(name, entries, i, guarded)
    item["problems"] = [{"kind": kind, "text": text} for kind, text in found]
    return item, [text for _, text in found], any(k == UNGUARDED_SETUID for k, _ in found)


# Kinds of problem a pam-twofa line can have (``problems``); ``twofa-admin doctor``
# gives each its severity and fix, ``pam status`` prints the text.
SUFFICIENT, OPTIONAL, BEFORE_PASSWORD, NO_PASSWORD = (
    "sufficient", "optional", "before-password", "no-password-step")
NEVER_RUNS, NO_REQUISITE, UNGUARDED_SETUID, UNGUARDED = (
    "never-runs", "no-requisite", "unguarded-setuid", "unguarded")


def problems(name: str, entries: list[ps.Entry], i: int,
             guarded: bool) -> list[tuple[str, str]]:
    """(kind, text) of everything wrong with the pam-twofa line ``entries[i]``."""
    entry = entries[i]
    control = entry.line.control.text if entry.line.control else ""
    found: list[tuple[str, str]] = []
    keyword = entry.line.control.keyword if entry.line.control else ""
    if keyword == "sufficient" or (entry.line.control and
                                   entry.line.control.action("success") == "done"):
        found.append((SUFFICIENT, f"{entry.describe()}: '{control}': a right code alone "
                      "ends the stack with success; use 'required' after the password step"))
    elif keyword == "optional":
        found.append((OPTIONAL, f"{entry.describe()}: 'optional': a wrong code does not "
                      "refuse"))
    frame = ps.frame_before(entries, i)[: -1 if guarded else None]  # its default=die
    steps = [k for k, e in enumerate(frame) if ps.checks_password(e, entries)]
    if not steps:
        later = any(ps.checks_password(e, entries) for e in entries[i + 1:]
                    if e.depth == entry.depth)
        found.append((BEFORE_PASSWORD if later else NO_PASSWORD,
                      f"{entry.describe()}: no password step before it in its stack "
                      "(right only for key + code stacks behind sshd's publickey)"))
    else:
        done, stop = ps.after_password(frame[steps[-1]:])
        if done is not None:
            found.append((NEVER_RUNS, f"{entry.describe()}: never runs after a right "
                          f"password: {done.describe()} ends the stack on success"))
        elif not stop:
            found.append((NO_REQUISITE, f"{entry.describe()}: no 'requisite' line after the "
                          f"password step {frame[steps[-1]].describe()}: a wrong code after "
                          "a wrong password is counted"))
    if not guarded:
        if name in ps.SETUID_SERVICES:
            found.append((UNGUARDED_SETUID,
                f"CRITICAL: {entry.describe()}: pam_python without {ps.DEFAULT_GUARD} right "
                f"before it, and {ps.SETUID_SERVICES[name]}: a local user can make Python "
                "load their own code as root through PATH or the working directory; run "
                f"'twofa-admin pam enable {name}' for the safe lines, or take it out"))
        else:
            found.append((UNGUARDED, f"{entry.describe()}: no {ps.DEFAULT_GUARD} right "
                          "before it (slower: an interpreter start in setcred too)"))
    return found


def service_status(resolver: ps.Resolver, name: str, module: str,
                   guard: str) -> dict[str, Any]:
    path = os.path.join(resolver.pam_dir, name)
    row: dict[str, Any] = {"service": name, "file": path, "enabled": False,
                           "managed": False, "setuid": name in ps.SETUID_SERVICES,
                           "critical": False, "entries": [], "warnings": [], "errors": []}
    try:
        stack = resolver.stack(name)
        row["managed"] = bool(ps.find_blocks(resolver.file(path)))
    except (PamConfigError, OSError) as exc:
        row["errors"].append(str(exc))
        return row
    row["errors"] += stack.problems
    for i, entry in enumerate(stack.entries):
        if ps.is_twofa(entry.line, module):
            item, warnings, critical = finding(resolver, name, stack.entries, i, guard)
            row["entries"].append(item)
            row["warnings"] += warnings
            row["critical"] = row["critical"] or critical
    row["enabled"] = bool(row["entries"])
    if row["enabled"] and name in ps.UNPRIVILEGED_SERVICES:
        row["warnings"].append("a screen locker's service: it runs PAM as the user, who "
                               "cannot read pam-twofa's state, so unlocking fails")
    if stack.fallback and row["enabled"]:
        row["warnings"].append("no auth lines of its own: libpam runs those of 'other'")
    if len(row["entries"]) > 1:
        row["warnings"].append(f"pam-twofa runs {len(row['entries'])} times in this stack: "
                               "the code is asked as often")
    return row


def status(pam_dir: str, *, module: str = ps.DEFAULT_MODULE,
           guard: str = ps.DEFAULT_GUARD) -> list[dict[str, Any]]:
    resolver = ps.Resolver(pam_dir)
    return [service_status(resolver, name, module, guard) for name in ps.services(pam_dir)]
