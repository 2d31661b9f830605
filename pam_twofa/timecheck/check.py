"""Is the server clock right? Ask NTP servers (``ntp``) and the host's time sync.

TOTP codes are only as good as the server clock: drift beyond the window makes
every code fail. ``check`` queries the servers in parallel, each answer checked
(server mode, synchronised, echoes our request), and reads whether automatic
time synchronisation is on (``timedatectl``, where systemd runs). The whole check
is bounded by the timeout, name lookups included: a query that has not answered
by then counts as no answer. Not on the login path (``twofa-clockcheck`` only).
"""

from __future__ import annotations

import glob
import os
import subprocess
import threading
import time

from pam_twofa import clockstatus
from pam_twofa.errors import UsageError
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

DEFAULT_SERVER = "pool.ntp.org"
NTP_PORT = 123
MAX_HOST_SERVERS = 4  # queries are parallel; more only adds traffic
SLACK = 0.25  # seconds past the timeout a query thread is waited for
SYSTEMD_RUN_DIR = "/run/systemd/system"  # exists when systemd is PID 1 (sd_booted)


class Answer(Record):
    """One server's reply, or why there was none."""

    server: str
    offset: float | None = None  # server time - our time, seconds
    delay: float | None = None  # round trip, seconds
    stratum: int | None = None
    error: str | None = None

    def as_plain(self) -> dict[str, Any]:
        if self.error is not None:
            return {"server": self.server, "error": self.error}
        return {"server": self.server, "offset": self.offset, "delay": self.delay,
                "stratum": self.stratum}


class Sync(Record):
    """Automatic time sync: ``timedatectl``'s NTP and NTPSynchronized, or chronyd's."""

    ntp: str = "unknown"  # on, off, unknown
    synchronized: str = "unknown"  # yes, no, unknown
    why: str = ""  # why unknown
    via: str = "timedatectl"  # or chronyc (no systemd, or timedatectl failed)


class Report(Record):
    checked_at: float
    max_offset: float
    timeout: float
    answers: tuple[Answer, ...]
    sync: Sync

    @property
    def chosen(self) -> Answer | None:
        """The answer the verdict uses: the median offset (lower median for an even count)."""
        good = sorted((a for a in self.answers if a.offset is not None),
                      key=lambda a: a.offset or 0.0)
        return good[(len(good) - 1) // 2] if good else None

    @property
    def verdict(self) -> str:
        chosen = self.chosen
        if chosen is None or chosen.offset is None:
            return clockstatus.NO_ANSWER
        if abs(chosen.offset) > self.max_offset:
            return clockstatus.OFFSET
        if self.sync.ntp == "off":
            return clockstatus.SYNC_OFF
        return clockstatus.IN_SYNC

    @property
    def exit_code(self) -> int:
        """0 in sync, 1 offset over the limit or sync off, 2 no server answered."""
        return {clockstatus.IN_SYNC: 0, clockstatus.NO_ANSWER: 2}.get(self.verdict, 1)

    def as_plain(self) -> dict[str, Any]:
        """The status document (also ``--json``'s output)."""
        chosen = self.chosen
        return {
            "checked_at": self.checked_at,
            "verdict": self.verdict,
            "max_offset": self.max_offset,
            "timeout": self.timeout,
            "offset": chosen.offset if chosen else None,
            "delay": chosen.delay if chosen else None,
            "stratum": chosen.stratum if chosen else None,
            "server": chosen.server if chosen else None,
            "sync": self.sync.ntp,
            "synchronized": self.sync.synchronized,
            "answers": [a.as_plain() for a in self.answers],
        }


def split_server(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (host, port)."""
    host, port = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"bad NTP server {text!r}")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or any(c.isspace() for c in host) or (
            port and not (port.isdigit() and 0 < int(port) < 65536)) or (
            text.endswith(":") and not port):
        raise UsageError(f"bad NTP server {text!r} (HOST or HOST:PORT)")
    return host, int(port) if port else NTP_PORT


# ------------------------------------------------------------- host config
def _lines(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split("!", 1)[0].split()
        if words:
            out.append(words)
    return out


def _with_port(host: str, options: list[str]) -> str:
    port = options[options.index("port") + 1] if "port" in options[:-1] else ""
    if port.isdigit() and int(port) != NTP_PORT:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _chrony(root: str, path: str, depth: int = 0) -> list[str]:
    """``server``/``pool`` lines, following ``include``, ``confdir`` and ``sourcedir``."""
    found: list[str] = []
    for words in _lines(root + path):
        key, args = words[0].lower(), words[1:]
        if key in ("server", "pool") and args:
            found.append(_with_port(args[0], args[1:]))
        elif depth < 2 and args and key in ("include", "confdir", "sourcedir"):
            pattern = {"include": "{}", "confdir": "{}/*.conf",
                       "sourcedir": "{}/*.sources"}[key].format(args[0])
            for sub in sorted(glob.glob(root + pattern)):
                found += _chrony(root, sub[len(root):], depth + 1)
    return found


def _timesyncd(root: str) -> list[str]:
    """``NTP=`` of timesyncd.conf and its drop-ins (a later or empty one replaces)."""
    servers: list[str] = []
    files = [f"{root}/etc/systemd/timesyncd.conf",
             *sorted(glob.glob(f"{root}/etc/systemd/timesyncd.conf.d/*.conf"))]
    for path in files:
        for words in _lines(path):
            key, eq, value = " ".join(words).partition("=")
            if eq and key.strip() == "NTP":
                servers = value.split()
    return servers


def _ntpd(root: str) -> list[str]:
    for path in ("/etc/ntpsec/ntp.conf", "/etc/ntp.conf"):
        found = [w[1] for w in _lines(root + path)
                 if w[0] in ("server", "pool") and len(w) > 1 and not w[1].startswith("127.127.")]
        if found:
            return found
    return []


def host_servers(root: str = "") -> tuple[str, ...]:
    """The host's configured NTP servers (chrony, timesyncd, ntpd), else pool.ntp.org."""
    root = root.rstrip("/")
    found: dict[str, None] = {}
    for path in ("/etc/chrony/chrony.conf", "/etc/chrony.conf"):
        if os.path.exists(root + path):
            found.update(dict.fromkeys(_chrony(root, path)))
            break
    found.update(dict.fromkeys(_timesyncd(root)))
    found.update(dict.fromkeys(_ntpd(root)))
    usable = []
    for server in found:
        try:
            split_server(server)
        except UsageError:
            continue
        usable.append(server)
    return tuple(usable[:MAX_HOST_SERVERS]) or (DEFAULT_SERVER,)


# ------------------------------------------------------------- queries
def query(server: str, timeout: float) -> Answer:
    """Ask one server once; every failure becomes an Answer with ``error``."""
    from pam_twofa.timecheck import ntp

    try:
        host, port = split_server(server)
        addresses = _addresses(host, port)
    except UsageError as exc:
        return Answer(server=server, error=exc.message)
    except OSError as exc:  # socket.gaierror
        return Answer(server=server, error=f"cannot resolve: {exc.strerror or exc}")
    failure = "no address"
    for address in addresses:  # the next one only when this one cannot be reached
        try:
            reply = ntp.exchange(address, port, timeout)
            break
        except TimeoutError:
            return Answer(server=server, error=f"no answer within {timeout:g} s")
        except OSError as exc:  # e.g. no IPv6 route, port unreachable
            failure = exc.strerror or str(exc)
    else:
        return Answer(server=server, error=failure)
    problem = _bad_reply(reply)
    if problem:
        return Answer(server=server, error=problem)
    return Answer(server=server, offset=reply.offset, delay=reply.delay,
                  stratum=reply.stratum)


def _addresses(host: str, port: int) -> list[str]:
    """The host's addresses, each once, in resolver order (at most three tried)."""
    import socket

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))[:3]


def _bad_reply(reply: Any) -> str | None:
    """Why a reply cannot be trusted (RFC 5905 sanity checks), or None."""
    if reply.mode != 4:
        return f"not a server reply (mode {reply.mode})"
    if reply.stratum == 0:
        return "kiss-o'-death (server refuses or is unsynchronised)"
    if reply.leap == 3 or reply.stratum > 15:
        return "server is not synchronised"
    if not reply.matches:
        return "reply does not match our request"
    return None


def query_all(servers: Sequence[str], timeout: float) -> tuple[Answer, ...]:
    """Query every server at once; wait at most ``timeout`` (+ slack) in all."""
    results: dict[int, Answer] = {}

    def worker(i: int, server: str) -> None:
        results[i] = query(server, timeout)

    deadline = time.monotonic() + timeout + SLACK
    threads = [threading.Thread(target=worker, args=(i, s), daemon=True)
               for i, s in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return tuple(results.get(i) or Answer(server=s, error=f"no answer within {timeout:g} s")
                 for i, s in enumerate(servers))


# ------------------------------------------------------------- automatic sync
def parse_timedatectl(text: str) -> Sync:
    """``timedatectl show -p NTP -p NTPSynchronized`` output -> Sync."""
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    words = {"yes": ("on", "yes"), "no": ("off", "no")}
    ntp = words.get(values.get("NTP", ""), ("unknown", ""))[0]
    synced = words.get(values.get("NTPSynchronized", ""), ("", "unknown"))[1]
    return Sync(ntp=ntp, synchronized=synced, why="" if ntp != "unknown" else
                "timedatectl did not say")


def parse_chronyc(text: str) -> Sync:
    """``chronyc -n -c tracking`` output (CSV) -> Sync; chronyd answering means sync is on."""
    fields = text.strip().split(",")
    if len(fields) < 14:
        return Sync(why=f"chronyc said: {text.strip()[:200] or 'nothing'}", via="chronyc")
    unsynced = fields[13] == "Not synchronised" or fields[0] == "00000000"
    return Sync(ntp="on", synchronized="no" if unsynced else "yes", via="chronyc")


def chrony_status(timeout: float, socket: str | None = None) -> Sync:
    """Ask chronyd itself (``chronyc tracking``), e.g. where systemd does not run."""
    cmd = ["chronyc", "-n", "-c", *(["-h", socket] if socket else []), "tracking"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Sync(why="no systemd and no chronyc", via="chronyc")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Sync(why=f"chronyc failed: {exc}", via="chronyc")
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or str(done.returncode))[:200]
        return Sync(why=f"chronyd did not answer: {said}", via="chronyc")
    return parse_chronyc(done.stdout)


def sync_status(timeout: float, run_dir: str = SYSTEMD_RUN_DIR,
                chrony_socket: str | None = None) -> Sync:
    """Whether automatic time sync is on: timedatectl where systemd runs, else chronyd."""
    if not os.path.isdir(run_dir):
        return chrony_status(timeout, chrony_socket)
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTP", "-p", "NTPSynchronized"],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return chrony_status(timeout, chrony_socket)
    if done.returncode != 0:
        return chrony_status(timeout, chrony_socket)
    return parse_timedatectl(done.stdout)


def check(servers: Iterable[str], max_offset: float, timeout: float,
          run_dir: str = SYSTEMD_RUN_DIR, chrony_socket: str | None = None) -> Report:
    """Query ``servers`` and timedatectl side by side; the whole within the timeout."""
    servers = tuple(servers)
    checked_at = time.time()
    start = time.monotonic()
    sync_box: list[Sync] = []
    sync_thread = threading.Thread(
        target=lambda: sync_box.append(sync_status(timeout, run_dir, chrony_socket)),
        daemon=True)
    sync_thread.start()
    answers = query_all(servers, timeout)
    sync_thread.join(max(0.0, start + timeout + SLACK - time.monotonic()))
    sync = sync_box[0] if sync_box else Sync(why="the time sync status did not come in time")
    return Report(checked_at=checked_at, max_offset=max_offset, timeout=timeout,
                  answers=answers, sync=sync)
