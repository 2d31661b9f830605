"""``doctor``'s PAM checks: every service's stack, through ``hostconf.pamstatus``.

pamstatus names each problem of a pam-twofa line (its ``kind``); here each kind gets
a severity and a fix. The one that matters most is CRITICAL: the module without the
guard in a setuid program's stack is local root (README "Security notes").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pam_twofa.errors import PamConfigError
from pam_twofa.hostconf import pamstack as ps
from pam_twofa.hostconf import pamstatus as st
from pam_twofa.rollout.findings import CRITICAL, ERROR, INFO, WARNING, Finding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

GUARD_LINE = "auth [success=1 ignore=ignore default=die] pam_twofa_guard.so"
ENABLE = "'twofa-admin pam disable {s}' then 'twofa-admin pam enable {s}' writes the safe lines"
FIXES = {
    st.UNGUARDED_SETUID: f"put '{GUARD_LINE}' on the line right before it; {ENABLE}",
    st.UNGUARDED: f"put '{GUARD_LINE}' on the line right before it",
    st.SUFFICIENT: "make it 'required', after the password step",
    st.OPTIONAL: "make it 'required': as 'optional' a wrong code still logs in",
    st.BEFORE_PASSWORD: "move it (with its guard line) after the password step; " + ENABLE,
    st.NO_PASSWORD: "add the password step before it; a stack without one is only for "
                    "sshd's key + code (publickey,keyboard-interactive)",
    st.NEVER_RUNS: "remove the jump or 'sufficient' that ends the stack after the "
                   "password, or put pam-twofa before it",
    st.NO_REQUISITE: "make the password step 'requisite', or follow it with 'auth "
                     "requisite pam_deny.so' (Debian's common-auth does)",
}
SEVERITY = {st.UNGUARDED_SETUID: CRITICAL, st.UNGUARDED: WARNING, st.SUFFICIENT: ERROR,
            st.OPTIONAL: ERROR, st.BEFORE_PASSWORD: ERROR, st.NO_PASSWORD: ERROR,
            st.NEVER_RUNS: ERROR, st.NO_REQUISITE: WARNING}


@dataclass(frozen=True)
class SshStack:
    """What the sshd checks need to know of the ssh service's stack."""

    enabled: bool = False
    keycode: bool = False  # the module with no password step before it (key + code)
    require_publickey: bool = False  # every such line has the argument
    guarded: bool = False  # every pam-twofa line has the guard right before it
    where: str = ""
    line: int = 0


def _stack_twofa(pam_dir: str, service: str) -> list[tuple[ps.Entry, list[ps.Entry], int]]:
    try:
        stack = ps.Resolver(pam_dir).stack(service)
    except (PamConfigError, OSError):
        return []
    return [(e, stack.entries, i) for i, e in enumerate(stack.entries) if ps.is_twofa(e.line)]


def ssh_stack(pam_dir: str, service: str) -> SshStack:
    found = _stack_twofa(pam_dir, service)
    if not found:
        return SshStack()
    keycode, guarded, with_arg = False, True, True
    for entry, entries, i in found:
        before = st.previous(entries, i)
        ok = bool(before and ps.is_guard_line(before.line))
        guarded = guarded and ok
        kinds = [k for k, _ in st.problems(service, entries, i, ok)]
        if st.NO_PASSWORD in kinds:
            keycode = True
            with_arg = with_arg and "require_publickey" in entry.line.args
    first = found[0][0].line
    return SshStack(True, keycode, keycode and with_arg, guarded, first.path, first.first)


def check(pam_dir: str, ssh_service: str) -> list[Finding]:
    if not os.path.isdir(pam_dir):
        return [Finding("pam-dir", ERROR, f"no PAM directory {pam_dir}",
                        "give the right one with --pam-dir or --root", pam_dir)]
    out: list[Finding] = []
    lines: dict[tuple[str, str, int], tuple[list[str], Finding]] = {}
    rows = st.status(pam_dir)
    for row in rows:
        name = row["service"]
        if not row["enabled"]:
            continue
        for text in row["errors"]:
            out.append(Finding("pam-stack", ERROR, f"{name}: {text}",
                               "fix the include (libpam fails the whole stack)", row["file"]))
        for item in row["entries"]:
            kinds = {p["kind"] for p in item["problems"]}
            for problem in item["problems"]:
                kind = problem["kind"]
                if kind == st.NO_PASSWORD and name == ssh_service:
                    continue  # key + code: the sshd checks judge it
                if kind == st.BEFORE_PASSWORD and "single_prompt=ask" in item["args"]:
                    continue  # the single-prompt split goes there on purpose
                severity = SEVERITY[kind]
                if kind == st.SUFFICIENT and kinds & {st.BEFORE_PASSWORD, st.NO_PASSWORD}:
                    severity = CRITICAL  # the code alone logs in
                key = (f"pam-{kind}", item["file"], item["line"])
                if key in lines:  # one line in several stacks (su and su-l): one finding
                    lines[key][0].append(name)
                    continue
                lines[key] = ([name], Finding(
                    f"pam-{kind}", severity, problem["text"].removeprefix("CRITICAL: "),
                    FIXES[kind].format(s=name), item["file"], item["line"]))
        if name in ps.UNPRIVILEGED_SERVICES:
            out.append(Finding("pam-screen-locker", WARNING,
                               f"{name}: a screen locker's service runs PAM as the user, who "
                               "cannot read pam-twofa's state: unlocking fails",
                               f"twofa-admin pam disable {name} (or unprivileged=ignore on "
                               "its line)", row["file"]))
        out.extend(_single_prompt(name, row))
        if len(row["entries"]) > 1 and not _split(row["entries"]):
            out.append(Finding("pam-twice", WARNING,
                               f"{name}: pam-twofa runs {len(row['entries'])} times in this "
                               "stack: the code is asked as often",
                               "keep one pam-twofa line (with its guard)", row["file"]))
    for names, f in lines.values():
        out.append(Finding(f.check, f.severity, f"{', '.join(names)}: {f.message}", f.fix,
                           f.file, f.line))
    if not any(row["enabled"] for row in rows):
        out.append(Finding("pam-not-enabled", INFO,
                           f"pam-twofa is in no service's auth stack in {pam_dir}",
                           "twofa-admin pam enable SERVICE (after 'twofa-admin report')",
                           pam_dir))
    return out


def _mode(item: dict[str, Any]) -> str | None:
    """``ask``/``verify`` of a line's ``single_prompt=`` argument (None: none)."""
    for arg in item["args"]:
        if str(arg).startswith("single_prompt="):
            return str(arg).partition("=")[2]
    return None


def _split(entries: list[dict[str, Any]]) -> bool:
    """The single-prompt pair, in order: one ``ask`` line, then one ``verify`` line."""
    return [_mode(e) for e in entries] == ["ask", "verify"]


def _single_prompt(name: str, row: dict[str, Any]) -> list[Finding]:
    """``ask`` only splits the answer and decides nothing: without a ``verify`` line
    after it the password alone logs in (README "Single-prompt mode")."""
    entries = row["entries"]
    modes = [_mode(e) for e in entries]
    if "ask" not in modes:
        return []
    first = modes.index("ask")
    if "verify" in modes[first + 1:]:
        return []
    item = entries[first]
    return [Finding("pam-single-prompt-no-verify", CRITICAL,
                    f"{name}: single_prompt=ask splits the answer but checks no code, and "
                    "no single_prompt=verify line follows it: the password alone logs in",
                    "add the guard line and 'auth required pam_python.so pam_twofa.py "
                    "single_prompt=verify' after the requisite password step",
                    item["file"], item["line"])]

