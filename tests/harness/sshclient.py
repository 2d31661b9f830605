"""Two real SSH clients for :class:`tests.harness.sshd.SshServer`: OpenSSH and paramiko.

Both answer keyboard-interactive prompts by *substring* of the prompt text: sshd merges
PAM TEXT_INFO/ERROR_MSG lines into the next prompt, so a prompt may carry a message
before "Verification code: ". ``answers`` is a list of (substring, answer); the first
pair whose substring is in the prompt answers it. Both return a :class:`Login` with
every prompt seen, the messages shown after the last prompt (the userauth banner),
the command's output, the module's log lines, and the wall time.

    openssh_login(server, "alice", [("Password", "secret"), ("Verification code", code)])
    paramiko_login(server, "alice", answers, key=Path(".../id_ed25519"), source="127.0.0.2")

A refused login: ``ok`` False (ssh exits 255; paramiko raises AuthenticationException).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.procs import SYSTEM_PATH
from tests.harness.sshd import SshServer

Answers = Sequence[tuple[str, str]]

ASKPASS = """#!/usr/bin/python3
# ssh's SSH_ASKPASS: answer the prompt in argv[1] by substring; log every prompt.
import json, os, sys
prompt = sys.argv[1] if len(sys.argv) > 1 else ""
with open(os.environ["TWOFA_ASKPASS_LOG"], "a") as f:
    f.write(json.dumps(prompt) + "\\n")
with open(os.environ["TWOFA_ASKPASS_RULES"]) as f:
    rules = json.load(f)
for sub, answer in rules:
    if sub in prompt:
        print(answer)
        sys.exit(0)
sys.exit(1)
"""


@dataclass(repr=False)
class Login:
    ok: bool
    prompts: list[str]
    log_lines: list[str]
    seconds: float
    detail: str = ""
    output: str = ""
    # PAM messages after the last prompt reach the client as the userauth banner:
    # OpenSSH prints it on stderr (LogLevel INFO), paramiko keeps it (get_banner).
    messages: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def saw(self, text: str) -> bool:
        """Whether any prompt contained ``text``."""
        return any(text in p for p in self.prompts)

    def result_line(self) -> str:
        """The module's one ``result=`` log line of this login (asserts there is one)."""
        found = [x for x in self.log_lines if " result=" in x]
        assert len(found) == 1, self
        return found[0]

    def __str__(self) -> str:
        return (f"ok={self.ok} seconds={self.seconds:.3f}\nprompts={self.prompts!r}\n"
                f"log={self.log_lines!r}\ndetail={self.detail}\nsshd log tail:\n"
                f"{self.extra.get('sshd_log', '')}")

    __repr__ = __str__  # pytest shows repr() in assertion messages


def make_key(directory: Path, name: str = "id_ed25519") -> tuple[Path, str]:
    """A new ed25519 key pair: (private key path, public key line)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                    os.fspath(path)], check=True, capture_output=True)
    return path, path.with_suffix(".pub").read_text().strip()


def fingerprint(private_key: Path) -> str:
    """OpenSSH's own SHA256 fingerprint of a key (``ssh-keygen -lf``)."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", os.fspath(private_key)],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def _askpass(directory: Path) -> Path:
    path = directory / "askpass"
    if not path.exists():
        path.write_text(ASKPASS)
        path.chmod(0o755)
    return path


def openssh_login(server: SshServer, user: str, answers: Answers, *,
                  key: Path | None = None, source: str = "127.0.0.1",
                  command: str = "true", timeout: float = 30) -> Login:
    """``ssh`` with SSH_ASKPASS answering by prompt text; no tty, no config, no agent."""
    work = server.dir.parent / "client"
    work.mkdir(exist_ok=True)
    rules = work / "rules.json"
    rules.write_text(json.dumps([list(a) for a in answers]))
    log = work / "prompts.log"
    log.write_text("")
    methods = f"publickey,{'keyboard-interactive'}" if key else "keyboard-interactive"
    cmd = ["ssh", "-F", "/dev/null", "-p", str(server.port), "-b", source,
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=INFO", "-o", "NumberOfPasswordPrompts=1",
           "-o", f"PreferredAuthentications={methods}",
           "-o", f"PubkeyAuthentication={'yes' if key else 'no'}",
           "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
           "-o", f"ConnectTimeout={int(timeout)}"]
    if key is not None:
        cmd += ["-i", os.fspath(key)]
    cmd += [f"{user}@{server.host}", command]
    env = {"PATH": SYSTEM_PATH, "HOME": os.fspath(work), "LANG": "C.UTF-8",
           "SSH_ASKPASS": os.fspath(_askpass(work)), "SSH_ASKPASS_REQUIRE": "force",
           "DISPLAY": ":0", "TWOFA_ASKPASS_RULES": os.fspath(rules),
           "TWOFA_ASKPASS_LOG": os.fspath(log)}
    server.drain_log()
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True, check=False)
    seconds = time.monotonic() - start
    prompts = [json.loads(line) for line in log.read_text().splitlines() if line]
    return Login(ok=proc.returncode == 0, prompts=prompts, log_lines=server.drain_log(),
                 seconds=seconds, detail=f"rc={proc.returncode} stderr={proc.stderr}",
                 output=proc.stdout, messages=proc.stderr,
                 extra={"rc": proc.returncode, "sshd_log": server.sshd_log()[-2000:]})


def paramiko_login(server: SshServer, user: str, answers: Answers, *,
                   key: Path | None = None, source: str = "127.0.0.1",
                   command: str = "true", timeout: float = 30) -> Login:
    """paramiko Transport: [publickey, then] auth_interactive, then run ``command``."""
    import paramiko

    prompts: list[str] = []

    def handler(title: str, instructions: str,
                prompt_list: Sequence[tuple[str, bool]]) -> list[str]:
        replies = []
        for text, _echo in prompt_list:
            full = "\n".join(x for x in (instructions, text) if x)
            prompts.append(full)
            replies.append(next((a for sub, a in answers if sub in full), ""))
        return replies

    server.drain_log()
    start = time.monotonic()
    ok, detail, output, messages = False, "", "", ""
    sock = socket.create_connection((server.host, server.port), timeout=timeout,
                                    source_address=(source, 0))
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.auth_timeout = timeout
        transport.start_client(timeout=timeout)
        if key is not None:
            pkey = paramiko.Ed25519Key.from_private_key_file(os.fspath(key))
            remaining = transport.auth_publickey(user, pkey)
            if remaining and "keyboard-interactive" not in remaining:
                raise paramiko.AuthenticationException(f"after key: {remaining}")
        if not transport.is_authenticated():
            transport.auth_interactive(user, handler)
        messages = (transport.get_banner() or b"").decode(errors="replace")
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(command)
        output = chan.makefile("r").read().decode(errors="replace")
        status = chan.recv_exit_status()
        ok = status == 0
        detail = f"exit={status}"
    except (paramiko.SSHException, OSError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
    finally:
        transport.close()
        sock.close()
    seconds = time.monotonic() - start
    return Login(ok=ok, prompts=prompts, log_lines=server.drain_log(), seconds=seconds,
                 detail=detail, output=output, messages=messages,
                 extra={"sshd_log": server.sshd_log()[-2000:]})


CLIENTS = {"openssh": openssh_login, "paramiko": paramiko_login}
