"""A real systemd-journald for tests, in its own mount namespace (no system change).

journald runs as a journal namespace instance (``systemd-journald NAME``, as
``systemd-journald@NAME.service`` would) inside ``unshare -m``, with a work dir
bind-mounted over /run and /var/log/journal there: its sockets and journal file
appear under the work dir, outside nothing changes. It does not need systemd as
PID 1. What it records is what a host's journald records: the sender's uid, pid
and comm come from the kernel (SCM_CREDENTIALS, /proc), not from the message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"


class Journald:
    def __init__(self) -> None:
        self.namespace = f"pamtwofa{os.getpid()}"
        # Under /tmp, world-traversable: other uids must reach the sockets.
        self.work = Path(tempfile.mkdtemp(prefix="pam-twofa-journal-"))
        self.work.chmod(0o755)
        (self.work / "run").mkdir(mode=0o755)
        (self.work / "journal").mkdir(mode=0o755)
        script = (
            "set -e; mount --make-rprivate /; "
            f"mount --bind {self.work}/run /run; "
            # persistent storage where the host has it; else journald keeps the
            # journal under /run/log/journal, which is the work dir's run/ here
            f"if [ -d /var/log/journal ]; then mount --bind {self.work}/journal "
            "/var/log/journal; fi; "
            f"exec {JOURNALD} {self.namespace}"
        )
        self.log = self.work / "journald.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.dev_log.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"journald did not start: {self.log.read_text()}")
            time.sleep(0.05)

    @property
    def sockets(self) -> Path:
        return self.work / f"run/systemd/journal.{self.namespace}"

    @property
    def dev_log(self) -> Path:
        """The syslog socket (what /dev/log is on a host)."""
        return self.sockets / "dev-log"

    @property
    def native(self) -> Path:
        """The native protocol socket (sd_journal_send)."""
        return self.sockets / "socket"

    def journal_files(self) -> list[Path]:
        return sorted([*self.work.glob(f"journal/*.{self.namespace}/*.journal"),
                       *self.work.glob(f"run/log/journal/*.{self.namespace}/*.journal")])

    def stop(self) -> None:
        """Stop journald (it flushes on SIGTERM); the journal files stay until close()."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def entries(self) -> list[dict[str, str]]:
        files = [f"--file={f}" for f in self.journal_files()]
        out = subprocess.run(["journalctl", "--no-pager", "-o", "json", *files],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)
