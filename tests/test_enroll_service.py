"""Issue 3 through the socket: the real service as root, ``twofa-enroll`` run by Debian's
python3 as unprivileged uids (setpriv), nss_wrapper naming those uids, zbarimg reading the
PNG, oathtool computing codes, pamtester logging in afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.enroll_support import (
    URI_RE,
    Service,
    client,
    interactive_client,
    running_service,
    service_world,
    shown_secret,
)
from tests.harness.pamenv import PamEnv, oathtool
from tests.harness.wait import wait_fresh_step, wait_until

PROMPT = "Enter the code from your app to finish enrollment"


@pytest.fixture
def world(pam_env: PamEnv) -> PamEnv:
    return service_world(pam_env, 4242)


def raw_request(service: Service, data: bytes, uid: int | None = None) -> dict[str, object]:
    """Send raw bytes (as root, or as ``uid`` through a setpriv'd helper)."""
    if uid is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(str(service.socket))
        with contextlib.suppress(OSError):  # the service stopped reading (too large):
            sock.sendall(data)  # its answer is still queued for us
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        sock.close()
        result: dict[str, object] = json.loads(buf)
        return result
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
            "try:\n s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR)\n"
            "except OSError: pass  # refused at accept: the answer is queued\n"
            "sys.stdout.write(s.makefile().readline())\n")
    done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "/usr/bin/python3", "-c", code, str(service.socket)],
                          input=data, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def state_of(env: PamEnv, user: str) -> dict[str, object] | None:
    path = env.state_dir / "users" / f"{user}.json"
    if not path.exists():
        return None
    data: dict[str, object] = json.loads(path.read_text())
    return data


def snapshot(env: PamEnv) -> dict[str, bytes]:
    users = env.state_dir / "users"
    if not users.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(users.iterdir())}


def enroll_via_client(env: PamEnv, service: Service, user: str, png: Path | None = None,
                      ) -> tuple[str, str, list[str]]:
    """Bare twofa-enroll as ``user``: (secret, uri, recovery codes)."""
    uid = env.users[user].uid
    args = ["--qr", "utf8"] + (["--png", str(png)] if png else [])
    proc = interactive_client(env, service, args, uid)
    wait_fresh_step()
    text = proc.expect(PROMPT)
    secret = shown_secret(text)
    uri_match = URI_RE.search(text)
    assert uri_match, text
    proc.send(oathtool(secret))
    rc, out = proc.finish()
    assert rc == 0, out
    assert "Two-factor authentication is on." in out
    codes = [line.strip().replace("-", "") for line in out.splitlines()
             if line.startswith("    ") and line.strip().replace("-", "").isdigit()]
    return secret, uri_match.group(1), codes


def test_unprivileged_user_enrolls_through_the_socket(world: PamEnv) -> None:
    alice = world.users["alice"]
    with running_service(world) as service:
        png = service.user_dir(alice.uid) / "qr.png"
        secret, uri, codes = enroll_via_client(world, service, "alice", png)
        # the PNG decodes to exactly the printed URI; written by alice, 0600
        decoded = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True,
                                 text=True, timeout=30, check=True).stdout.strip()
        assert decoded == uri
        st = os.stat(png)
        assert (st.st_uid, st.st_mode & 0o777) == (alice.uid, 0o600)
        assert f"secret={secret}" in uri and uri.startswith("otpauth://totp/")
        assert "alice%40" in uri
        # ten 10-digit recovery codes, stored only hashed
        assert len(codes) == 10 and all(len(c) == 10 for c in codes)
        state = state_of(world, "alice")
        assert state is not None and state["enrolled"] is True and state["secret"] == secret
        assert state["pending"] is None
        blob = (world.state_dir / "users" / "alice.json").read_text()
        assert not any(code in blob for code in codes)
        assert all(str(h).startswith("scrypt$") for h in state["recovery_codes"])  # type: ignore[attr-defined]
        # status through the service, as alice, never shows the secret
        shown = client(world, service, ["status", "--json"], alice.uid)
        assert shown.returncode == 0, shown.stderr
        info = json.loads(shown.stdout)
        assert info["user"] == "alice" and info["enrolled"] is True
        assert info["required"] is True and info["recovery_codes_left"] == 10
        assert secret not in shown.stdout
        # one authpriv line per change, naming the caller; never a secret or a code
        lines = world._log.drain()  # the service logs to the harness's syslog socket
        assert any(f"pam_twofa(enroll): user=alice uid={alice.uid} op=confirm result=ok" in ln
                   for ln in lines), lines
        assert not any(secret in ln or any(c in ln for c in codes) for ln in lines), lines
    # the enrollment is real: the next login asks for a code (the next step's: the
    # confirming code itself is spent)
    res = world.pamtester("svc", "alice", ["secret", oathtool(secret, at=int(time.time()) + 30)])
    assert res.rc == 0, res
    assert "Verification code" in res.stdout + res.stderr
    replay = world.pamtester("svc", "alice", ["secret", oathtool(secret)])
    assert replay.rc != 0, replay  # the code that confirmed enrollment cannot log in


def test_isolation_between_uids_and_unknown_uid(world: PamEnv) -> None:
    alice, bob = world.users["alice"], world.users["bob"]
    with running_service(world) as service:
        a_secret, _uri, _codes = enroll_via_client(world, service, "alice")
        before = snapshot(world)
        # bob naming alice is refused before anything is read or changed
        for op in ("status", "begin", "confirm", "disable", "recovery-codes"):
            answer = raw_request(service, json.dumps({"op": op, "user": "alice"}).encode()
                                 + b"\n", uid=bob.uid)
            assert answer["ok"] is False and answer["error"] == "bad-request", answer
        # bob's own requests act on bob only, even with alice's current code
        status = raw_request(service, b'{"op": "status"}\n', uid=bob.uid)
        assert status["ok"] is True and status["user"] == "bob" and status["enrolled"] is False
        assert "secret" not in status
        code = oathtool(a_secret, at=int(time.time()) + 30)
        for op in ("disable", "recovery-codes"):
            answer = raw_request(service, json.dumps({"op": op, "code": code}).encode() + b"\n",
                                 uid=bob.uid)
            assert answer["ok"] is False and answer["error"] == "not-enrolled", answer
        confirm = raw_request(service, json.dumps({"op": "confirm", "code": code}).encode()
                              + b"\n", uid=bob.uid)
        assert confirm["ok"] is False and confirm["error"] == "no-pending"
        assert snapshot(world)["alice.json"] == before["alice.json"]
        begun = raw_request(service, b'{"op": "begin"}\n', uid=bob.uid)
        assert begun["ok"] is True and begun["secret"] != a_secret
        assert "bob%40" in str(begun["uri"])
        assert snapshot(world)["alice.json"] == before["alice.json"]
        bob_state = state_of(world, "bob")
        assert bob_state is not None and bob_state["enrolled"] is False
        # a uid with no passwd entry is refused and leaves no trace
        before = snapshot(world)
        ghost = raw_request(service, b'{"op": "begin"}\n', uid=4999)
        assert ghost == {"ok": False, "error": "unknown-user",
                         "message": "uid 4999 has no passwd entry"}
        assert snapshot(world) == before
        # alice's status is still hers alone
        mine = raw_request(service, b'{"op": "status"}\n', uid=alice.uid)
        assert mine["user"] == "alice" and mine["enrolled"] is True


def test_bad_and_huge_requests_are_refused_without_harm(world: PamEnv) -> None:
    with running_service(world) as service:
        enroll_via_client(world, service, "alice")
        before = snapshot(world)
        huge = b'{"op": "begin", "code": "' + b"1" * (10 * 1024 * 1024) + b'"}\n'
        answer = raw_request(service, huge, uid=world.users["alice"].uid)
        assert answer["ok"] is False and answer["error"] == "too-large"
        for bad, reason in ((b"not json\n", "bad-request"), (b"[1, 2]\n", "bad-request"),
                            (b'{"op": "steal"}\n', "unknown-op"), (b"\n", "bad-request"),
                            (b'{"op": "confirm", "code": 5}\n', "bad-request"),
                            (b'{"op": "begin"}', "code-needed")):  # EOF ends a request too
            answer = raw_request(service, bad, uid=world.users["alice"].uid)
            assert answer["ok"] is False and answer["error"] == reason, (bad, answer)
        assert service.alive()
        assert snapshot(world) == before
        # a silent client is cut off by the read timeout; others are served meanwhile
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        os.seteuid(world.users["alice"].uid)  # SO_PEERCRED records the euid at connect
        try:
            silent.connect(str(service.socket))
        finally:
            os.seteuid(0)
        silent.settimeout(20)
        started = time.monotonic()
        status = raw_request(service, b'{"op": "status"}\n', uid=world.users["bob"].uid)
        assert status["ok"] is True
        reply = json.loads(silent.makefile().readline())
        assert reply["error"] == "timeout" and time.monotonic() - started < 5 + 10
        silent.close()
        # still serving, nothing changed; root has no passwd entry under nss_wrapper
        assert raw_request(service, b'{"op": "status"}\n')["error"] == "unknown-user"
        assert raw_request(service, b'{"op": "status"}\n', uid=4242)["ok"] is True
        assert snapshot(world) == before


def test_one_request_at_a_time_per_uid(world: PamEnv) -> None:
    with running_service(world) as service:
        alice = world.users["alice"].uid
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        os.seteuid(alice)  # SO_PEERCRED records the euid at connect
        try:
            holder.connect(str(service.socket))  # alice's request in progress (not yet sent)
        finally:
            os.seteuid(0)
        # until the service has accepted the holder, alice's requests are served
        busy = wait_until(lambda: raw_request(service, b'{"op": "status"}\n', uid=alice),
                          lambda r: r.get("error") == "busy", what="alice held up")
        assert busy["ok"] is False and busy["error"] == "busy"
        other = raw_request(service, b'{"op": "status"}\n', uid=world.users["bob"].uid)
        assert other["ok"] is True  # another uid is not held up
        holder.sendall(b'{"op": "status"}\n')
        assert json.loads(holder.makefile().readline())["user"] == "alice"
        holder.close()


def test_reenroll_recovery_codes_and_disable(world: PamEnv) -> None:
    bob = world.users["bob"]  # not required by the policy (not in wheel)
    alice = world.users["alice"]
    with running_service(world) as service:
        secret, _uri, codes = enroll_via_client(world, service, "bob")
        # re-enrolling needs a code; a wrong one counts as a failure
        refused = raw_request(service, b'{"op": "begin"}\n', uid=bob.uid)
        assert refused["error"] == "code-needed"
        wrong = raw_request(service, b'{"op": "begin", "code": "000000"}\n', uid=bob.uid)
        assert wrong["error"] == "bad-code"
        st = state_of(world, "bob")
        assert st is not None and st["failures"] == 1 and st["pending"] is None
        # a recovery code proves it (and is used up)
        begun = raw_request(service, json.dumps({"op": "begin", "code": codes[0]}).encode()
                            + b"\n", uid=bob.uid)
        assert begun["ok"] is True, begun
        st = state_of(world, "bob")
        assert st is not None and len(st["recovery_codes"]) == 9  # type: ignore[arg-type]
        assert st["secret"] == secret  # the old secret works until the new one is confirmed
        # regenerate with the current TOTP code (next step: the confirming one is spent)
        regen = client(world, service, ["recovery-codes", "--json"], bob.uid,
                       input=oathtool(secret, at=int(time.time()) + 30) + "\n")
        assert regen.returncode == 0, regen.stderr
        new_codes = json.loads(regen.stdout)
        assert len(new_codes) == 10 and not set(new_codes) & set(codes)
        # alice may not disable: the policy requires 2FA of wheel members
        a_secret, _u, _c = enroll_via_client(world, service, "alice")
        no = client(world, service, ["disable"], alice.uid,
                    input=oathtool(a_secret, at=int(time.time()) + 30) + "\n")
        assert no.returncode == 77 and "requires" in no.stderr, no
        assert state_of(world, "alice")["enrolled"] is True  # type: ignore[index]
        # bob may, with a code (a recovery code here)
        off = client(world, service, ["disable"], bob.uid, input=new_codes[3] + "\n")
        assert off.returncode == 0, off.stderr
        st = state_of(world, "bob")
        assert st is not None and st["enrolled"] is False and st["secret"] is None
        assert st["recovery_codes"] == []
    # bob, not required and no longer enrolled, logs in with the password alone
    res = world.pamtester("svc", "bob", ["secret"])
    assert res.rc == 0, res


def test_confirm_failures_count_in_the_lockout(world: PamEnv) -> None:
    world.write_policy("mandatory:\n  scope: admins\nlockout:\n  max_failures: 2\n")
    bob = world.users["bob"]
    with running_service(world) as service:
        begun = raw_request(service, b'{"op": "begin"}\n', uid=bob.uid)
        assert begun["ok"] is True
        for _ in range(2):
            wrong = raw_request(service, b'{"op": "confirm", "code": "000000"}\n', uid=bob.uid)
            assert wrong["error"] == "bad-code"
        right = oathtool(str(begun["secret"]))
        locked = raw_request(service, json.dumps({"op": "confirm", "code": right}).encode()
                             + b"\n", uid=bob.uid)
        assert locked["error"] == "locked"
        st = state_of(world, "bob")
        assert st is not None and st["enrolled"] is False and st["lock_level"] == 1


def test_concurrent_clients_of_many_uids(world: PamEnv) -> None:
    for i in range(6):
        world.add_user(f"u{i}")
    with running_service(world) as service:
        results: dict[str, dict[str, object]] = {}

        def ask(name: str) -> None:
            results[name] = raw_request(service, b'{"op": "begin"}\n',
                                        uid=world.users[name].uid)

        threads = [threading.Thread(target=ask, args=(f"u{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(results[f"u{i}"]["ok"] is True for i in range(6)), results
        secrets = {str(results[f"u{i}"]["secret"]) for i in range(6)}
        assert len(secrets) == 6
        for i in range(6):
            st = state_of(world, f"u{i}")
            assert st is not None and st["pending"]["secret"] == results[f"u{i}"]["secret"]  # type: ignore[index]


def test_refusals_come_before_the_code_is_asked(world: PamEnv) -> None:
    """Issue 12 item 7: disable for a required user and recovery-codes for a user who is
    not enrolled asked for a code (and used up a right one) before refusing."""
    alice, bob = world.users["alice"], world.users["bob"]
    with running_service(world) as service:
        _secret, _uri, codes = enroll_via_client(world, service, "alice")
        no = client(world, service, ["disable"], alice.uid, input=codes[0] + "\n")
        assert no.returncode == 77 and "requires" in no.stderr, no
        assert "Current code" not in no.stdout + no.stderr  # never asked
        st = state_of(world, "alice")
        assert st is not None and len(st["recovery_codes"]) == 10  # type: ignore[arg-type]
        assert st["failures"] == 0
        none = client(world, service, ["recovery-codes"], bob.uid, input="123456\n")
        assert none.returncode != 0 and "not on for your account" in none.stderr, none
        assert "Current code" not in none.stdout + none.stderr
        # over the socket: the precondition is checked before the code, even a wrong one
        wrong = raw_request(service, b'{"op": "disable", "code": "000000"}\n', uid=alice.uid)
        assert wrong["error"] == "not-allowed", wrong
        assert state_of(world, "alice")["failures"] == 0  # type: ignore[index]
        ask = raw_request(service, b'{"op": "recovery-codes"}\n', uid=alice.uid)
        assert ask["error"] == "code-needed", ask
        # a code still works where it can help
        regen = client(world, service, ["recovery-codes", "--json"], alice.uid,
                       input=codes[0] + "\n")
        assert regen.returncode == 0, regen.stderr
        assert "Current code" in regen.stderr


def test_self_reenrollment_revokes_devices_and_codes(world: PamEnv) -> None:
    """Issue 11 finding 8: twofa-enroll over an enrollment revokes trusted devices, a
    pending emergency code and a waiting address, keeps the verified email, says so."""
    from tests.enroll_support import REVOKED_TEXT, revoked_and_kept, seed_for_reenrollment

    bob = world.users["bob"]
    with running_service(world) as service:
        _secret, _uri, codes = enroll_via_client(world, service, "bob")
        seed_for_reenrollment(world.state_dir, "bob")
        proc = interactive_client(world, service, ["--qr", "none"], bob.uid)
        proc.expect("Current code from your app")
        proc.send(codes[0])
        wait_fresh_step()
        secret = shown_secret(proc.expect(PROMPT))
        proc.send(oathtool(secret))
        rc, out = proc.finish()
        assert rc == 0, out
        for text in REVOKED_TEXT:
            assert text in out, out
        revoked_and_kept(world.state_dir, "bob")
