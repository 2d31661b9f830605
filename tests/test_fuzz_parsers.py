"""Property-based fuzzing (hypothesis) of every parser of outside input (issue 8):
the policy parser, the state loader, the google-authenticator importer, the
SSH_AUTH_INFO_0 / SSH_CONNECTION parsers and code input.

The property everywhere: the result is a value of the documented shape, or the
documented error (a ``TwofaError`` subclass); never any other exception.
"""

from __future__ import annotations

import base64
import os
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pam_twofa import policy, policyfile, schema, totp, trust
from pam_twofa.clock import Clock
from pam_twofa.enroll import googleauth
from pam_twofa.errors import (
    CorruptState,
    PolicyError,
    PolicyErrors,
    StateError,
    UsageError,
)
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.state import FIELDS, SCHEMA_VERSION, UserState

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Plain data as YAML / JSON can carry it.
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True) | st.text(max_size=20))
plain = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


# ------------------------------------------------------------------------ policy parser
def _section_values(section: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = [*schema.SCHEMA[section][1], "bogus_key"]
    names = st.lists(st.sampled_from(["wheel", "sudo", "alice", "10.0.0.0/8", "::1/128",
                                      "bad/x", "", "a b"]), max_size=3)
    value = (scalars | names | st.sampled_from(["none", "admins", "all", "selected", "deny",
                                                "notice", "inline", "SHA1", "starttls"]))
    return st.dictionaries(st.sampled_from(keys), value, max_size=5)


policies = st.dictionaries(
    st.sampled_from([*schema.SCHEMA, "failmode", "unknown_section"]),
    st.one_of(*(_section_values(s) for s in schema.SCHEMA), st.sampled_from(["secure", "safe",
                                                                             "open"])),
    max_size=6)


def _check_policy_text(text: str) -> None:
    try:
        plain_data = policyfile.parse_text(text, "/etc/pam-twofa/policy.yaml")
    except PolicyError as exc:
        each = exc.errors if isinstance(exc, PolicyErrors) else [exc]
        assert all(e.path == "/etc/pam-twofa/policy.yaml" and e.problem for e in each)
        return
    built = policy.build(plain_data)  # validated data always builds
    assert built.failmode in ("secure", "safe")
    assert built.mandatory.scope in ("none", "admins", "all", "selected")


@FUZZ
@given(st.text(max_size=300))
@example("mandatory: {scope: all}\nmandatory: {scope: none}\n")  # duplicate key
@example("!!python/object/apply:os.system ['true']\n")
@example("a: &x [*x]\n")  # recursive alias
@example("[" * 200)
@example("lockout: {max_failures: 2018-01-01}\n")
def test_policy_parser_on_any_text(text: str) -> None:
    _check_policy_text(text)


@FUZZ
@given(policies)
def test_policy_parser_on_structured_policies(data: dict[str, Any]) -> None:
    _check_policy_text(yaml.safe_dump(data))


# ------------------------------------------------------------------------ state loader
def _state_fields() -> st.SearchStrategy[dict[str, Any]]:
    value = plain | st.sampled_from(["JBSWY3DPEHPK3PXP", "SHA1", "SHA512", "not base32!"])
    return st.dictionaries(st.sampled_from([*FIELDS, "version", "user", "extra"]), value,
                           max_size=8)


def _check_from_plain(data: object) -> None:
    try:
        state = UserState.from_plain("alice", data)
    except CorruptState as exc:
        assert "alice" in exc.message
        return
    again = UserState.from_plain("alice", state.to_plain())  # what we accept, we can write
    assert again.to_plain() == state.to_plain()


@FUZZ
@given(plain)
def test_state_from_plain_on_any_data(data: object) -> None:
    _check_from_plain(data)


@FUZZ
@given(_state_fields())
def test_state_from_plain_on_near_valid_records(fields: dict[str, Any]) -> None:
    data = {"version": SCHEMA_VERSION, "user": "alice", **fields}
    _check_from_plain(data)


def test_state_loader_on_any_bytes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = FileStore(Paths(state_dir=str(state_dir)), Clock())
    store.users()  # makes the directories
    path = state_dir / "users" / "alice.json"

    @FUZZ
    @given(st.binary(max_size=400) | plain.map(lambda v: repr(v).encode()))
    @example(b"[" * 100_000)  # deep nesting: the C scanner's recursion limit
    @example(b'{"version": 1, "user": "alice", "failures": 1e999}')
    @example(b"\xff\xfe{}")
    @example(b'{"version": 1, "user": "alice"} {}')
    def load(raw: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, raw)
        finally:
            os.close(fd)
        try:
            state = store.load("alice")
        except StateError:
            return
        assert state is not None and state.user == "alice"

    load()


# ------------------------------------------------------------------------ GA importer
ga_lines = st.one_of(
    st.just('" TOTP_AUTH'), st.just('" DISALLOW_REUSE'),
    st.builds(lambda n: f'" WINDOW_SIZE {n}', st.integers(-5, 50)),
    st.builds(lambda n: f'" STEP_SIZE {n}', st.text(string.digits + "x-", max_size=6)),
    st.builds(lambda a, b: f'" RATE_LIMIT {a} {b}', st.integers(0, 9), st.integers(0, 99)),
    st.builds(lambda n: f'" HOTP_COUNTER {n}', st.integers(0, 9)),
    st.text(string.digits, min_size=7, max_size=9),
    st.text(max_size=30))
ga_secrets = st.one_of(st.binary(min_size=0, max_size=40).map(totp.b32encode),
                       st.text(max_size=40))


@FUZZ
@given(ga_secrets, st.lists(ga_lines, max_size=10), st.booleans())
def test_ga_importer_on_near_valid_files(secret: str, lines: list[str], nl: bool) -> None:
    text = "\n".join([secret, *lines]) + ("\n" if nl else "")
    try:
        parsed = googleauth.parse(text, "ga")
    except UsageError as exc:
        assert exc.message.startswith("ga")  # names the file (and line)
        return
    assert len(totp.b32decode(parsed.secret)) >= 16  # >= 128 bits
    assert 1 <= parsed.period <= 3600
    assert all(len(c) == 8 and c.isdigit() for c in parsed.scratch_codes)


@FUZZ
@given(st.text(max_size=300))
def test_ga_importer_on_any_text(text: str) -> None:
    try:
        parsed = googleauth.parse(text, "ga")
    except UsageError as exc:
        assert exc.message.startswith("ga")
        return
    assert parsed.secret and parsed.period > 0


# ------------------------------------------------------------------------ SSH env parsers
auth_lines = st.one_of(
    st.builds(lambda k, b: f"publickey {k} {base64.b64encode(b).decode()}",
              st.sampled_from(["ssh-ed25519", "ssh-rsa", ""]), st.binary(max_size=64)),
    st.builds(lambda k, t: f"publickey {k} {t}", st.just("ssh-ed25519"), st.text(max_size=40)),
    st.just("keyboard-interactive"), st.text(max_size=60))


@FUZZ
@given(st.lists(auth_lines, max_size=4).map("\n".join) | st.text(max_size=200) | st.none())
def test_ssh_auth_info_parser(info: str | None) -> None:
    fp = trust.key_fingerprint(info)
    assert fp is None or (fp.startswith("SHA256:") and len(fp) == 7 + 43)


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=60),
                 st.builds(lambda ip, p: f"{ip} {p} 127.0.0.1 22",
                           st.ip_addresses().map(str), st.integers(0, 70000))),
       st.none() | st.text(max_size=40) | st.ip_addresses().map(str))
def test_ssh_connection_parser(connection: str | None, rhost: str | None) -> None:
    ip = trust.client_ip(connection, rhost)
    if ip is not None:
        import ipaddress

        assert str(ipaddress.ip_address(ip)) == ip


# ------------------------------------------------------------------------ code input
@FUZZ
@given(st.text(max_size=40) | st.text(string.digits + " \t\n", max_size=12),
       st.integers(6, 10))
@example("１２３４５６", 6)  # fullwidth digits: refused
@example(" 123 456 ", 6)
def test_normalize_code(answer: str, digits: int) -> None:
    code = totp.normalize_code(answer, digits)
    if code is not None:
        assert len(code) == digits and all(c in string.digits for c in code)
        assert code == "".join(answer.split(" ")).strip()
