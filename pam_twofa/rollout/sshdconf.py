"""sshd_config as sshd reads it, enough for ``doctor``: keywords with file:line.

sshd(8) takes the first value of a keyword it meets; ``Include`` (globs, relative to
/etc/ssh, sorted, allowed inside ``Match`` too) puts a file's lines in place; a
``Match`` line starts a block that lasts to the next ``Match`` (or the end of the
top-level file) and applies only to the connections it matches. We do not evaluate
``Match`` criteria: each block's settings are reported as a possible override.
``--root DIR`` reads every path under DIR.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass, field

SSH_DIR = "/etc/ssh"
# ChallengeResponseAuthentication is an old name of KbdInteractiveAuthentication.
ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
# OpenSSH 9.2's built-in defaults of the keywords doctor looks at.
DEFAULTS = {"usepam": "no", "kbdinteractiveauthentication": "yes",
            "passwordauthentication": "yes", "authenticationmethods": "any",
            "pubkeyauthentication": "yes"}
MAX_DEPTH = 16
KEYWORD = re.compile(r"([^\s=]+)(?:\s*=\s*|\s+)(.*)")  # 'Key value' or 'Key=value'


@dataclass(frozen=True)
class Setting:
    key: str  # lower case, aliases resolved
    spelled: str  # the keyword as written
    value: str  # the arguments, blanks normalised
    file: str
    line: int
    match: str = ""  # "" outside Match, else the Match line ("Match User bob")


@dataclass
class SshdConfig:
    path: str
    settings: list[Setting] = field(default_factory=list)
    problems: list[tuple[str, int, str]] = field(default_factory=list)
    effective: dict[str, str] = field(default_factory=dict)  # from ``sshd -T``, if run

    def first(self, key: str) -> Setting | None:
        """The setting sshd uses outside any Match block (the first one met)."""
        return next((s for s in self.settings if s.key == key and not s.match), None)

    def value(self, key: str) -> str:
        """The global value: ``sshd -T``'s if it ran, else the files', else the default."""
        if key in self.effective:
            return self.effective[key]
        found = self.first(key)
        return found.value.lower() if found else DEFAULTS.get(key, "")

    def in_matches(self, key: str) -> list[Setting]:
        """The first setting of ``key`` in each Match block that has one."""
        seen, out = set(), []
        for s in self.settings:
            if s.key == key and s.match and (s.match, s.file) not in seen:
                seen.add((s.match, s.file))
                out.append(s)
        return out


def under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root else path


def read(path: str, root: str = "") -> SshdConfig:
    """Parse ``path`` (already under ``root``) and everything it includes."""
    conf = SshdConfig(path)
    _read(conf, path, root, "", 0)
    return conf


def _read(conf: SshdConfig, path: str, root: str, match: str, depth: int) -> None:
    """Read one file in the context ``match`` (a Match in it ends with the file)."""
    if depth > MAX_DEPTH:
        conf.problems.append((path, 0, "Include nests too deeply (a loop?)"))
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        conf.problems.append((path, 0, f"cannot read: {exc.strerror or exc}"))
        return
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = KEYWORD.match(line)
        keyword, rest = (found.group(1), found.group(2)) if found else (line, "")
        key = keyword.lower()
        try:
            words = shlex.split(rest, comments=True)
        except ValueError:
            conf.problems.append((path, number, f"cannot parse: {line}"))
            continue
        if key == "match":
            match = f"Match {' '.join(words)}"
            if " ".join(words).lower() == "all":
                match = ""  # "Match all" ends a block: global again
            continue
        if key == "include":
            for pattern in words:
                full = pattern if pattern.startswith("/") else f"{SSH_DIR}/{pattern}"
                for name in sorted(glob.glob(under(root, full))):
                    _read(conf, name, root, match, depth + 1)
            continue
        key = ALIASES.get(key, key)
        conf.settings.append(Setting(key, keyword, " ".join(words), path, number,
                                     match))


def effective(sshd: str = "/usr/sbin/sshd", config: str = "") -> dict[str, str] | str:
    """``sshd -T``'s global values (lower-case keys and values), or why it failed."""
    import subprocess

    cmd = [sshd, "-T"] + (["-f", config] if config else [])
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(cmd)}: {exc}"
    if res.returncode != 0:
        return f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()[:200]}"
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(ALIASES.get(key, key), value.strip().lower())
    return out
