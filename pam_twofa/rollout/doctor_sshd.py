"""``doctor``'s sshd checks: the sshd_config keywords that decide whether PAM's code
prompt runs, and runs safely, and the PATH the ssh service starts with.

The rules come from what admins of PAM 2FA modules hit most (issue 15): sshd's own
password method answers the code prompt with the password; a key alone never runs
PAM's auth stack; a key + code stack run without a key first lets users in with the
code alone (or, out of scope, with nothing).
"""

from __future__ import annotations

import os
import shlex

from pam_twofa.rollout.doctor_pam import SshStack
from pam_twofa.rollout.findings import CRITICAL, ERROR, INFO, WARNING, Finding
from pam_twofa.rollout.sshdconf import SshdConfig, under

KEYS = ("usepam", "kbdinteractiveauthentication", "passwordauthentication",
        "authenticationmethods", "pubkeyauthentication")
KEY_CODE = "publickey,keyboard-interactive"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system",
             "/usr/lib/systemd/system")
DEBIAN_PYTHON_DIRS = ("/usr/bin", "/bin")  # /bin is /usr/bin on merged-/usr Debian


def method_lists(value: str) -> list[list[str]]:
    """AuthenticationMethods as lists of methods ("keyboard-interactive:pam" -> its name)."""
    if value in ("any", ""):
        return []
    return [[m.split(":")[0] for m in lst.split(",")] for lst in value.split()]


def judge(v: dict[str, str], stack: SshStack) -> list[tuple[str, str, str, str, str]]:
    """(check, severity, message, fix, keyword) for one set of effective values."""
    out = []
    if v["usepam"] != "yes":
        out.append(("sshd-usepam", ERROR, "UsePAM is not 'yes': sshd never runs PAM's auth "
                    "stack, so pam-twofa never asks for a code", "UsePAM yes", "usepam"))
    kbd = v["kbdinteractiveauthentication"] == "yes"
    if not kbd:
        out.append(("sshd-kbdinteractive", ERROR, "KbdInteractiveAuthentication (old name "
                    "ChallengeResponseAuthentication) is 'no': the code prompt can only be "
                    "answered by sshd's password method, with the password",
                    "KbdInteractiveAuthentication yes", "kbdinteractiveauthentication"))
    lists = method_lists(v["authenticationmethods"])
    password_ok = not lists or any("password" in lst for lst in lists)
    if v["passwordauthentication"] == "yes" and password_ok:
        out.append(("sshd-password-auth", ERROR, "PasswordAuthentication yes: sshd's password "
                    "method answers pam-twofa's hidden code prompt with the password, which "
                    "is refused and counted as a wrong code (users lock themselves out)",
                    "PasswordAuthentication no (keyboard-interactive asks the password and "
                    "the code through PAM)", "passwordauthentication"))
    pubkey = v["pubkeyauthentication"] == "yes"
    if stack.keycode:
        bad = not lists or any(
            "keyboard-interactive" not in lst
            or "publickey" not in lst[: lst.index("keyboard-interactive")] for lst in lists)
        if bad:
            severity = ERROR if stack.require_publickey else CRITICAL
            out.append(("sshd-keycode-methods", severity, "the ssh PAM stack is key + code "
                        "(no password step) but AuthenticationMethods "
                        f"'{v['authenticationmethods']}' does not require publickey before "
                        "keyboard-interactive: a key alone skips the code, and "
                        "keyboard-interactive alone runs the stack without a key"
                        + ("" if stack.require_publickey else
                           " (without require_publickey: the code alone logs in)"),
                        f"AuthenticationMethods {KEY_CODE}", "authenticationmethods"))
    elif pubkey and kbd and (not lists or any("keyboard-interactive" not in lst
                                              for lst in lists)):
        out.append(("sshd-key-skips-code", WARNING, "a key alone logs in: sshd then never "
                    "runs PAM's auth stack, so no code is asked (AuthenticationMethods "
                    f"'{v['authenticationmethods']}')", "AuthenticationMethods "
                    "keyboard-interactive (password + code), or the key + code stack with "
                    f"AuthenticationMethods {KEY_CODE}", "authenticationmethods"))
    return out


def check(conf: SshdConfig, stack: SshStack, service: str) -> list[Finding]:
    if not stack.enabled:
        return [Finding("sshd-not-enabled", INFO, f"pam-twofa is not in the stack of PAM "
                        f"service '{service}': sshd checks skipped",
                        "twofa-admin pam enable sshd, when you want codes over SSH")]
    out: list[Finding] = [Finding("sshd-config", WARNING, f"{text}", "", f, n)
                          for f, n, text in conf.problems]
    if stack.keycode and not stack.require_publickey:
        out.append(Finding("pam-keycode-no-require-publickey", CRITICAL,
                           f"{service}: a key + code stack (no password step) without the "
                           "module argument require_publickey: run without a key first (an "
                           "AuthenticationMethods from another file or a Match block), a "
                           "user out of scope logs in with nothing, an enrolled one with the "
                           "code alone", "add require_publickey to the pam_python line",
                           stack.where, stack.line))
    base = {k: conf.value(k) for k in KEYS}
    seen = set()
    for check_id, severity, message, fix, key in judge(base, stack):
        seen.add(check_id)
        setting = conf.first(key)
        default = "" if setting or conf.effective else " (the built-in default)"
        out.append(Finding(check_id, severity, message + default, fix,
                           setting.file if setting else conf.path,
                           setting.line if setting else 0))
    for key in KEYS:
        for setting in conf.in_matches(key):
            values = {**base, key: setting.value.lower()}
            for check_id, severity, message, fix, k in judge(values, stack):
                if k == key and check_id not in seen:
                    out.append(Finding(check_id, severity, f"for connections matching "
                                       f"'{setting.match}': {message}", fix, setting.file,
                                       setting.line))
    return out


def service_path(root: str, unit: str = "ssh.service") -> tuple[str, str, int]:
    """(PATH, file, line) the ssh service starts with: systemd's Environment= or an
    EnvironmentFile= (e.g. /etc/default/ssh) setting PATH, else systemd's default;
    without a unit, what /etc/default/ssh sets."""
    path, where, number = SYSTEMD_PATH, "", 0
    units = [d for d in UNIT_DIRS if os.path.isfile(under(root, f"{d}/{unit}"))]
    files = [f"{units[0]}/{unit}"] if units else []
    dropins: dict[str, str] = {}
    for d in reversed(UNIT_DIRS):  # /etc's drop-in of a name replaces /lib's
        folder = under(root, f"{d}/{unit}.d")
        if os.path.isdir(folder):
            dropins.update({n: f"{d}/{unit}.d/{n}" for n in os.listdir(folder)
                            if n.endswith(".conf")})
    files += [dropins[n] for n in sorted(dropins)]
    env_files = [] if units else ["/etc/default/ssh"]  # sysvinit's /etc/init.d/ssh sources it
    for name in files:
        for n, key, value in _unit_lines(under(root, name)):
            if key == "Environment":
                for word in _words(value):
                    if word.startswith("PATH="):
                        path, where, number = word[5:], name, n
            elif key == "EnvironmentFile":
                env_files.append(value.lstrip("-"))
    for name in env_files:  # systemd: EnvironmentFile= wins over Environment=
        for n, line in _lines(under(root, name)):
            word = line.removeprefix("export ").strip()
            if word.startswith("PATH="):
                path, where, number = (_words(word) or ["PATH="])[0][5:], name, n
    return path, where, number


def first_python(root: str, path: str) -> str | None:
    """The directory of a ``python3`` (read under ``root``) that ``path`` puts before
    Debian's /usr/bin (or /bin), or None."""
    for d in path.split(":"):
        d = d.rstrip("/") or "/"
        if d in DEBIAN_PYTHON_DIRS:
            return None
        if d and os.path.exists(under(root, f"{d}/python3")):
            return d
    return None


def check_path(root: str, stack: SshStack, unit: str = "ssh.service") -> list[Finding]:
    if not stack.enabled:
        return []
    path, where, line = service_path(root, unit)
    found = first_python(root, path)
    if found is None:
        return []
    source = where or f"systemd's default PATH for {unit}"
    if stack.guarded:
        return [Finding("ssh-path-python", WARNING, f"{found}/python3 comes before "
                        f"/usr/bin/python3 on the ssh service's PATH ({path}, {source}); the "
                        "guard starts Debian's interpreter from fixed paths, so logins work, "
                        "but a pam_python line without it would load that Python's library",
                        f"keep the guard line before every pam_python line; or remove "
                        f"{found}/python3", where, line)]
    return [Finding("ssh-path-python", ERROR, f"{found}/python3 comes before "
                    f"/usr/bin/python3 on the ssh service's PATH ({path}, {source}) and the "
                    "pam-twofa line has no guard: pam_python's interpreter loads that "
                    "Python's standard library (logins fail with ModuleNotFoundError, or run "
                    "its code)", "put the guard line right before the pam_python line "
                    "('twofa-admin pam enable sshd' writes both)", where, line)]


def _lines(path: str) -> list[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [(n, x.strip()) for n, x in enumerate(f, 1)
                    if x.strip() and not x.lstrip().startswith(("#", ";"))]
    except OSError:
        return []


def _unit_lines(path: str) -> list[tuple[int, str, str]]:
    out = []
    for n, line in _lines(path):
        key, eq, value = line.partition("=")
        if eq:
            out.append((n, key.strip(), value.strip()))
    return out


def _words(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()
