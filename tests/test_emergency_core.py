"""Pure parts of emergency codes and the security email (a FileStore in tmp_path and a
FixedClock), and every notification mail against a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa import emergency, errors, policy, schema
from pam_twofa.clock import FixedClock
from pam_twofa.errors import PolicyError, UsageError
from pam_twofa.filestore import FileStore
from pam_twofa.mail import mailer, notify, security_email
from pam_twofa.paths import Paths
from tests.harness.smtpd import CertAuthority, MailServer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

NOW = 1_800_000_000.0
CODE_RE = re.compile(r"^ {4}(\d{6,12})\r?$", re.M)


def pol(**sections: dict[str, object]) -> policy.Policy:
    base = schema.defaults()
    for name, values in sections.items():
        base = base.replace(**{name: getattr(base, name).replace(**values)})
    return base


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return FileStore(Paths(state_dir=str(state)), FixedClock(NOW))


def test_codes_are_random_digits_and_sealed_salted() -> None:
    codes = {emergency.new_code(8) for _ in range(50)}
    assert all(len(c) == 8 and c.isdigit() for c in codes) and len(codes) > 45
    a, b = emergency.seal("12345678", NOW, 600), emergency.seal("12345678", NOW, 600)
    assert a["salt"] != b["salt"] and a["hash"] != b["hash"]
    assert "12345678" not in repr(a)
    assert a["expires"] == NOW + 600 and a["iterations"] == emergency.ITERATIONS
    assert emergency.matches(a, "1234 5678", NOW + 599)
    assert emergency.matches(a, "1234-5678", NOW)
    assert not emergency.matches(a, "12345678", NOW + 600)  # expired at ttl
    assert not emergency.matches(a, "12345679", NOW)
    assert not emergency.matches(a, "", NOW)
    assert not emergency.matches(None, "12345678", NOW)
    assert not emergency.matches({**a, "salt": "zz"}, "12345678", NOW)  # damaged: no match


def test_send_limit_counts_one_hour() -> None:
    from pam_twofa.state import UserState

    p = pol(emergency={"max_sends_per_hour": 2})
    st = UserState("alice")
    emergency.reserve_send(st, p, NOW)
    emergency.reserve_send(st, p, NOW + 10)
    with pytest.raises(errors.SendLimit):
        emergency.reserve_send(st, p, NOW + 20)
    emergency.reserve_send(st, p, NOW + 3600)  # the first one left the hour
    assert st.sends == [NOW + 10, NOW + 3600]
    # verification mails have a budget of their own (issue 12 item 10)
    emergency.reserve_send(st, p, NOW + 3600, "verify")
    emergency.reserve_send(st, p, NOW + 3601, "verify")
    with pytest.raises(errors.SendLimit):
        emergency.reserve_send(st, p, NOW + 3602, "verify")
    assert st.sends == [NOW + 10, NOW + 3600] and st.verify_sends == [NOW + 3600, NOW + 3601]


def test_hold_after_a_change_of_address() -> None:
    from pam_twofa.state import UserState

    st = UserState("alice")
    st.enrolled, st.email = True, "a@example.com"
    p = pol(smtp={"host": "localhost"})
    assert emergency.offered(p, st, NOW) and emergency.held_until(p, st, NOW) is None
    st.email_changed_at = NOW
    assert emergency.held_until(p, st, NOW + 1) == NOW + 24 * 3600
    assert not emergency.offered(p, st, NOW + 24 * 3600 - 1)
    assert emergency.offered(p, st, NOW + 24 * 3600)
    p0 = pol(smtp={"host": "localhost"}, emergency={"after_email_change_hours": 0})
    assert emergency.offered(p0, st, NOW)


def test_address_rules_and_mask() -> None:
    assert mailer.mask("bob@mail.example.org") == "b***@mail.example.org"
    bad_ones = ["", "a@", "@b", "a@@example.com", "a@example.com\r\nBcc: e@x.org",
                "a;b@example.com", "a@.example.com", "a@example.com.", "a@example..com",
                "a\x7f@example.com", "a@example.com\x7f", "a\x85b@example.com",
                "a\x9b31m@example.com", "a\u200b@example.com", "a\u202e@example.com",
                "a\u2028@example.com", "a\x00@example.com"]
    bad_ones += [f"a{chr(c)}b@example.com" for c in range(0x80, 0xA0)]
    for bad in bad_ones:
        with pytest.raises(UsageError):
            mailer.check_address(bad)
    # dotless domains are mail hosts too (issue 12 item 10)
    for good in ("user@localhost", "a@b", "root@mailhub", "jörg@example.de"):
        assert mailer.check_address(good) == good
    with pytest.raises(PolicyError):
        mailer.server(schema.defaults().smtp)  # no host: a configuration error


def test_verification_flow_in_the_store(store: FileStore, tmp_path: Path) -> None:
    clock = store.clock
    assert isinstance(clock, FixedClock)
    with store.update("alice") as st:
        st.email_pending = emergency.seal("11112222", NOW, 600, address="al@example.com")
    assert security_email.masked(store.load("alice"), NOW)["email_pending"] == "a***@example.com"
    with pytest.raises(errors.VerifyFailed, match="wrong"):
        security_email.confirm("alice", "99999999", pol(), store, clock)
    state = store.load("alice")
    assert state is not None and state.email is None and state.email_pending is not None
    assert state.email_pending["tries"] == 1  # the refusal was saved
    done = security_email.confirm("alice", "11112222", pol(), store, clock)
    assert done.email == "a***@example.com" and done.held_until == NOW + 24 * 3600
    state = store.load("alice")
    assert state is not None and state.email == "al@example.com" and state.email_pending is None
    with store.update("alice") as st:
        st.email_pending = emergency.seal("33334444", NOW, 600, address="x@example.com")
    clock.advance(601)
    with pytest.raises(errors.VerifyFailed, match="expired"):
        security_email.confirm("alice", "33334444", pol(), store, clock)
    data = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"11112222" not in data and b"33334444" not in data
    assert store.set_email("alice", None)
    state = store.load("alice")
    assert state is not None and state.email is None


@pytest.fixture
def mail(ca: CertAuthority) -> Iterator[tuple[MailServer, policy.Policy]]:
    with MailServer(ca.server_context(), "starttls") as srv:
        yield srv, pol(smtp={"host": "localhost", "port": srv.port, "ca_file": str(ca.ca_file),
                             "sender": "twofa@test.example", "timeout_seconds": 2})


def test_every_notification_arrives_without_secrets(
        mail: tuple[MailServer, policy.Policy]) -> None:
    srv, p = mail
    to = "alice@example.com"
    assert notify.emergency_code_used(p, "alice", to, client="203.0.113.7", now=NOW)
    assert notify.device_trusted(p, "alice", to, client="203.0.113.7", now=NOW,
                                 until=NOW + 30 * 86400, device="ssh-ed25519 SHA256:abc")
    assert notify.locked_out(p, "alice", to, client="203.0.113.7", now=NOW, until=NOW + 300)
    assert notify.reset_by_admin(p, "alice", to, now=NOW, by="root")
    got = srv.wait(4)
    subjects = [m.message["Subject"] for m in got]
    host = mailer.hostname()
    assert subjects == [f"[{host}] An emergency code was used to log in",
                        f"[{host}] A device was trusted for your account",
                        f"[{host}] Your account was locked after wrong codes",
                        f"[{host}] Your two-factor authentication was reset"]
    for m in got:
        msg = m.message
        assert m.rcpt_tos == [to]
        for header in ("Date", "Message-ID", "From", "To", "Subject"):
            assert msg[header], header
        assert msg.get_content_type() == "text/plain"
        body = m.body
        assert "Account: alice" in body and f"Host:    {host}" in body and "Time:" in body
        assert not CODE_RE.search(body)  # no code-like line in any notice
    assert "Client:  203.0.113.7" in got[0].body and "Client:" not in got[3].body
    # Switched off, no address, or no server: nothing is sent, nothing raises.
    off = p.replace(notifications=p.notifications.replace(locked_out=False))
    assert not notify.locked_out(off, "alice", to, client=None, now=NOW, until=NOW)
    assert not notify.emergency_code_used(p, "alice", None, client=None, now=NOW)
    assert not notify.emergency_code_used(schema.defaults(), "alice", to, client=None, now=NOW)
    dead = p.replace(smtp=p.smtp.replace(port=1))
    assert not notify.reset_by_admin(dead, "alice", to, now=NOW)
    assert len(srv.received) == 4


def test_policy_refuses_unusable_smtp_settings() -> None:
    from pam_twofa import schema

    def problems(smtp: dict[str, object]) -> list[str]:
        return [p for _line, p in schema.validate({"smtp": smtp})[1]]

    assert problems({"host": "mail.example.org", "username": "bob"}) == [
        "smtp.password_file is needed with a username and auth: password"]
    assert problems({"auth": "xoauth2", "token_command": "/usr/local/sbin/tok"}) == [
        "smtp.username is needed with auth: xoauth2"]
    assert problems({"ca_file": "ca.pem"}) == ["smtp.ca_file must be an absolute path"]
    assert problems({"security": "tls"})[0].startswith("smtp.security must be one of")
    assert problems({"provider": "gmail", "username": "a@gmail.com",
                     "password_file": "/etc/pam-twofa/smtp-password"}) == []


def test_an_unproven_address_cannot_be_confirmed_once_enrolled(store: FileStore) -> None:
    """An address named while 2FA was off (or by an older version, without a code) is not
    confirmed for an enrolled user: naming it was never proven with the second factor."""
    from pam_twofa import totp

    with store.update("alice") as st:
        st.enrolled, st.secret = True, totp.random_secret()
        st.email = "old@example.com"
        st.email_pending = emergency.seal("11112222", NOW, 600, address="x@example.com")
    with pytest.raises(errors.VerifyFailed, match="without a code"):
        security_email.confirm("alice", "11112222", pol(), store, store.clock)
    state = store.load("alice")
    assert state is not None and state.email == "old@example.com"
    assert state.email_pending is None and state.email_changed_at is None


def test_state_from_before_the_new_fields_reads_with_defaults() -> None:
    """verify_sends and email_changed_at came without a schema bump: a file without them
    reads as no verification mails and no change of address (no hold)."""
    from pam_twofa.state import UserState

    old = {"version": 1, "user": "alice", "enrolled": False, "email": "a@example.com",
           "sends": [NOW]}
    st = UserState.from_plain("alice", old)
    assert st.verify_sends == [] and st.email_changed_at is None and st.sends == [NOW]
    assert emergency.held_until(pol(), st, NOW) is None
