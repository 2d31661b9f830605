"""Strict policy parsing (every error names file and line) and the compiled cache."""

from __future__ import annotations

import marshal
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import policy, policyfile, schema
from pam_twofa.errors import PolicyError, PolicyErrors
from pam_twofa.paths import Paths
from tests.policy_support import errors_of, paths, write

__all__ = ["paths"]  # the fixture


# ------------------------------------------------------------------------------ defaults
def test_defaults_are_the_documented_ones(paths: Paths) -> None:
    p = policyfile.load(paths, use_cache=False)  # an empty file: every default
    assert p == schema.defaults()
    assert p.mandatory.scope == "none"
    assert p.mandatory.admin_groups == frozenset({"wheel", "sudo"})
    assert p.mandatory.users == p.mandatory.groups == frozenset()
    assert p.mandatory.exempt_users == p.mandatory.exempt_groups == frozenset()
    assert p.enrollment.grace_days == 7
    assert (p.totp.issuer, p.totp.digits, p.totp.period, p.totp.algorithm, p.totp.window) == (
        None, 6, 30, "SHA1", 1)
    lock = p.lockout
    assert (lock.max_failures, lock.interval_seconds, lock.lock_seconds,
            lock.max_lock_seconds) == (5, 900, 300, 86400)
    assert p.failmode == "secure"


def test_missing_default_file_means_defaults_missing_named_file_is_an_error(
        tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.yaml")
    assert policyfile.load(Paths(policy=absent, state_dir=str(tmp_path / "s"))) == \
        schema.defaults()
    with pytest.raises(PolicyError, match="no such file"):
        policyfile.load(Paths(policy=absent, policy_explicit=True,
                              state_dir=str(tmp_path / "s")))


def test_full_policy_parses(paths: Paths) -> None:
    write(paths, """\
# a comment
mandatory:
  scope: selected
  admin_groups: [adm]
  users: [alice, bob]
  groups:
    - ops
  exempt_users: [svc]
  exempt_groups: []
enrollment: {grace_days: 0}
totp: {issuer: Example, digits: 8, period: 60, algorithm: SHA256, window: 2}
lockout: {max_failures: 3, interval_seconds: 60, lock_seconds: 10, max_lock_seconds: 10}
failmode: safe
""")
    p = policyfile.load(paths, use_cache=False)
    assert p.mandatory.scope == "selected"
    assert p.mandatory.users == frozenset({"alice", "bob"})
    assert p.mandatory.groups == frozenset({"ops"})
    assert p.mandatory.admin_groups == frozenset({"adm"})
    assert p.enrollment.grace_days == 0
    assert p.totp == policy.TotpPolicy(issuer="Example", digits=8, period=60,
                                       algorithm="SHA256", window=2)
    assert p.lockout.max_failures == 3 and p.lockout.max_lock_seconds == 10
    assert p.failmode == "safe"


# --------------------------------------------------------------------- strictness + lines
@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("mandatory:\n  scope: all\nbogus: 1\n", 3, "unknown section 'bogus'"),
        ("lockout:\n  max_failures: 3\n  lock_secs: 5\n", 3, "unknown key lockout.lock_secs"),
        ("\n\ntotp:\n  digits: 6\n\n  colour: red\n", 6, "unknown key totp.colour"),
        ("mandatory:\n  scope: everyone\n", 2, "mandatory.scope must be one of none, admins"),
        ("mandatory: {scope: no}\n", 1, "mandatory.scope must be one of"),  # YAML 1.1 false
        ("totp:\n  digits: 5\n", 2, "totp.digits must be from 6 to 8, not 5"),
        ("totp:\n  window: '1'\n", 2, "totp.window must be a whole number"),
        ("totp:\n  window: 1.0\n", 2, "totp.window must be a whole number"),
        ("totp:\n  algorithm: md5\n", 2, "totp.algorithm must be one of SHA1, SHA256, SHA512"),
        ("totp:\n  issuer: ''\n", 2, "totp.issuer must be a non-empty one-line string"),
        ("lockout:\n  max_failures: true\n", 2, "lockout.max_failures must be a whole number"),
        ("lockout:\n  max_failures: 0\n", 2, "lockout.max_failures must be from 1 to 1000"),
        ("enrollment:\n  grace_days: -1\n", 2, "enrollment.grace_days must be from 0"),
        ("failmode: maybe\n", 1, "failmode must be one of secure, safe"),
        ("mandatory:\n  admin_groups: wheel\n", 2, "mandatory.admin_groups must be a list"),
        ("mandatory:\n  users: [a b]\n", 2, "must list plain names without spaces"),
        ("mandatory:\n  users: [1]\n", 2, "must list plain names"),
        ("totp: 6\n", 1, "totp must be a mapping"),
        ("- mandatory\n", 1, "the policy must be a mapping of sections"),
        ("lockout:\n  lock_seconds: 600\n  max_lock_seconds: 300\n", 3,
         "lockout.max_lock_seconds must not be less than lock_seconds"),
        ("trusted_devices:\n  networks: [10.0.0.0/8, not-a-net]\n", 2, "is not an IP network"),
        ("clock:\n  servers: ['ntp:99999']\n", 2, "bad port"),
    ],
)
def test_bad_policy_error_names_file_and_line(paths: Paths, text: str, line: int,
                                              needle: str) -> None:
    found = errors_of(paths, text)
    assert len(found) == 1, found
    assert found[0][0] == line, found
    assert needle in found[0][1], found


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("totp:\n  digits: 6\n  digits: 8\n", 3, "duplicate key 'digits'"),
        ("totp: {digits: 6}\nlockout: {}\ntotp: {window: 1}\n", 3, "duplicate key 'totp'"),
        ("mandatory: [\n  scope\n", 3, "not valid YAML"),
        ("mandatory:\n  scope: all: no\n", 2, "not valid YAML"),
        ("mandatory:\n\tscope: all\n", 2, "not valid YAML"),
        ("x: !!python/object/apply:os.system [true]\n", 1, "is not allowed"),
        ("x:\n  y: !!python/name:os.system ''\n", 2, "not valid YAML"),
        ("mandatory: !!python/object:os.system {}\n", 1, "is not allowed"),
        ("mandatory:\n  users: !!set {alice, bob}\n", 2, "is not allowed"),
        ("a: &x 1\nb: *y\n", 2, "not valid YAML"),
        ("1: x\n", 1, "key 1 is not a name"),
        ("--- {}\n--- {}\n", 2, "not valid YAML"),
    ],
)
def test_duplicates_and_bad_yaml(paths: Paths, text: str, line: int, needle: str) -> None:
    found = errors_of(paths, text)
    assert found == [(line, found[0][1])], found
    assert needle in found[0][1]


def test_every_error_listed_with_its_line(paths: Paths) -> None:
    found = errors_of(paths, """\
mandatory:
  scope: all
  sccope: none
totp:
  digits: 9
lockout:
  max_failures: 3
extra: {}
""")
    lines = sorted(line for line, _ in found)
    assert lines == [3, 5, 8]
    assert any("unknown key mandatory.sccope" in p for _, p in found)
    assert any("totp.digits" in p for _, p in found)
    assert any("unknown section 'extra'" in p for _, p in found)


def test_not_utf8_refused(paths: Paths) -> None:
    Path(paths.policy).write_bytes(b"totp:\n  issuer: \xff\xfe\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        policyfile.load(paths, use_cache=False)


# ------------------------------------------------------------------------ failmode hint
def _hint(paths: Paths, text: str) -> str | None:
    write(paths, text)
    with pytest.raises(PolicyError) as info:
        policyfile.load(paths, use_cache=False)
    return info.value.failmode


def test_failmode_hint(paths: Paths) -> None:
    assert _hint(paths, "failmode: safe\nmandatory: {scoop: all}\n") == "safe"
    assert _hint(paths, "mandatory: {scoop: all}\nfailmode: safe\n") == "safe"
    assert _hint(paths, "failmode: secure\nmandatory: {scoop: all}\n") == "secure"
    assert _hint(paths, "mandatory: {scoop: all}\n") is None
    assert _hint(paths, "failmode: sometimes\n") is None
    assert _hint(paths, "failmode: safe\nmandatory: [\n") is None  # unreadable: no hint


# ------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o622])
def test_policy_writable_by_group_or_others_refused(paths: Paths, mode: int) -> None:
    write(paths, "mandatory: {scope: all}\n")
    os.chmod(paths.policy, mode)
    with pytest.raises(PolicyError, match="writable by group or others"):
        policyfile.load(paths)


def test_policy_readable_by_others_is_fine(paths: Paths) -> None:
    write(paths, "mandatory: {scope: all}\n")
    os.chmod(paths.policy, 0o644)
    assert policyfile.load(paths).mandatory.scope == "all"
    os.chmod(paths.policy, 0o600)
    assert policyfile.load(paths).mandatory.scope == "all"


def test_policy_of_another_owner_or_not_a_file_refused(paths: Paths, tmp_path: Path) -> None:
    write(paths, "mandatory: {scope: all}\n")
    os.chown(paths.policy, 4242, 4242)
    with pytest.raises(PolicyError, match="owned by uid 4242"):
        policyfile.load(paths)
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(PolicyError, match="not a regular file"):
        policyfile.load(paths.replace(policy=str(folder)))


# ------------------------------------------------------------------------------- cache
@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts full parses (a spy: the real parser still runs)."""
    calls: list[str] = []
    real: Callable[[str, str], dict[str, Any]] = policyfile.parse_text

    def spy(text: str, path: str) -> dict[str, Any]:
        calls.append(path)
        return real(text, path)

    monkeypatch.setattr(policyfile, "parse_text", spy)
    return calls


def test_cache_hit_avoids_parsing(paths: Paths, parses: list[str]) -> None:
    write(paths, "mandatory: {scope: admins}\n")
    first = policyfile.load(paths)
    assert len(parses) == 1
    cache = Path(paths.policy_cache)
    assert cache.is_file() and stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(paths.cache_dir).stat().st_mode) == 0o700
    for _ in range(3):
        assert policyfile.load(paths) == first
    assert len(parses) == 1
    assert first.mandatory.scope == "admins"


def test_edit_invalidates_cache(paths: Paths, parses: list[str]) -> None:
    write(paths, "mandatory: {scope: admins}\n")
    assert policyfile.load(paths).mandatory.scope == "admins"
    write(paths, "mandatory: {scope: all}\n")
    assert policyfile.load(paths).mandatory.scope == "all"
    assert len(parses) == 2


def test_same_size_edit_with_old_mtime_invalidates(paths: Paths, parses: list[str]) -> None:
    write(paths, "mandatory: {scope: admins}\n")
    before = os.stat(paths.policy)
    assert policyfile.load(paths).mandatory.scope == "admins"
    write(paths, "mandatory: {scope: none  }\n")  # the same size
    os.utime(paths.policy, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(paths.policy)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert policyfile.load(paths).mandatory.scope == "none"  # ctime changed
    assert len(parses) == 2


def test_edit_to_invalid_is_not_hidden_by_cache(paths: Paths) -> None:
    write(paths, "mandatory: {scope: admins}\n")
    policyfile.load(paths)
    write(paths, "mandatory: {scope: admins, extra: 1}\n")
    with pytest.raises(PolicyError, match=r"unknown key mandatory\.extra"):
        policyfile.load(paths)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00\x01garbage", marshal.dumps((1, 2, 3)), marshal.dumps("text"),
     marshal.dumps(({"x": 1}, {}))[:-3]],
    ids=["empty", "garbage", "wrong-shape", "wrong-type", "truncated"],
)
def test_corrupt_cache_ignored(paths: Paths, parses: list[str], garbage: bytes) -> None:
    write(paths, "mandatory: {scope: all}\n")
    policyfile.load(paths)
    Path(paths.policy_cache).write_bytes(garbage)
    assert policyfile.load(paths).mandatory.scope == "all"
    assert len(parses) == 2
    assert policyfile.load(paths).mandatory.scope == "all"  # rewritten: a hit again
    assert len(parses) == 2


def test_cache_of_another_key_or_insecure_cache_ignored(paths: Paths,
                                                        parses: list[str]) -> None:
    write(paths, "mandatory: {scope: all}\n")
    policyfile.load(paths)
    cache = Path(paths.policy_cache)
    key, source, plain, error, since = marshal.loads(cache.read_bytes())
    assert error is None
    plain["mandatory"]["scope"] = "none"
    # a cache whose data was changed but whose file is group-writable: not trusted
    cache.write_bytes(marshal.dumps((key, source, plain, None, since)))
    cache.chmod(0o660)
    assert policyfile.load(paths).mandatory.scope == "all"
    assert len(parses) == 2
    # a cache made for another policy file is not used for this one
    other_key = (key[0], key[1], key[2], "/etc/other.yaml", *key[4:])
    cache.write_bytes(marshal.dumps((other_key, source, plain, None, since)))
    cache.chmod(0o600)
    assert policyfile.load(paths).mandatory.scope == "all"
    assert len(parses) == 3
    # same identity, other content (two edits within one clock tick): not used
    cache.write_bytes(marshal.dumps((key, b"mandatory: {scope: none}\n", plain, None, since)))
    assert policyfile.load(paths).mandatory.scope == "all"
    assert len(parses) == 4


def test_policy_check_path_does_not_write_cache(paths: Paths) -> None:
    write(paths, "mandatory: {scope: all}\n")
    policyfile.load(paths, use_cache=False)
    assert not Path(paths.policy_cache).exists()


def test_unwritable_state_dir_only_costs_speed(paths: Paths, tmp_path: Path) -> None:
    write(paths, "mandatory: {scope: all}\n")
    state = Path(paths.state_dir)
    state.mkdir(mode=0o755)  # group/other access: not ours to use
    assert policyfile.load(paths).mandatory.scope == "all"
    assert not Path(paths.cache_dir).exists()


# ---------------------------------------------------------------------- scope decisions
@pytest.mark.parametrize(
    ("mandatory", "user", "uid", "groups", "required"),
    [
        ({"scope": "none"}, "root", 0, {"wheel"}, False),
        ({"scope": "all"}, "bob", 1000, set(), True),
        ({"scope": "admins"}, "root", 0, set(), True),
        ({"scope": "admins"}, "alice", 1000, {"wheel"}, True),
        ({"scope": "admins"}, "alice", 1000, {"sudo", "users"}, True),
        ({"scope": "admins"}, "bob", 1000, {"users"}, False),
        ({"scope": "admins", "admin_groups": ["adm"]}, "alice", 1000, {"wheel"}, False),
        ({"scope": "admins", "exempt_users": ["alice"]}, "alice", 1000, {"wheel"}, False),
        ({"scope": "admins", "exempt_groups": ["robots"]}, "ci", 1000, {"wheel", "robots"},
         False),
        ({"scope": "selected", "users": ["bob"]}, "bob", 1000, set(), True),
        ({"scope": "selected", "groups": ["ops"]}, "carol", 1000, {"ops"}, True),
        ({"scope": "selected", "groups": ["ops"]}, "dave", 1000, {"dev"}, False),
        ({"scope": "all", "exempt_users": ["svc"]}, "svc", 999, set(), False),
    ],
)
def test_scope(mandatory: dict[str, Any], user: str, uid: int, groups: set[str],
               required: bool) -> None:
    from pam_twofa import schema

    plain, errors = schema.validate({"mandatory": mandatory})
    assert errors == []
    rules = policy.build(plain).mandatory
    assert rules.requires(user, uid, frozenset(groups)) is required


def test_store_postgresql_keys_are_strict_with_lines(tmp_path: Path) -> None:
    """The nested store.postgresql mapping: unknown keys and bad values name their line;
    failmode safe is refused with the fleet backend; a dsn is needed."""
    from pam_twofa import policyfile

    good = ("store:\n  backend: postgresql\n  postgresql:\n"
            "    dsn: host=db dbname=twofa user=web1\n    timeout_seconds: 1.5\n")
    pol = policy.build(policyfile.parse_text(good, "p.yaml"))
    assert pol.store.backend == "postgresql"
    assert pol.store.postgresql.dsn == "host=db dbname=twofa user=web1"
    assert pol.store.postgresql.timeout_seconds == 1.5
    assert pol.store.postgresql.socket == "/run/pam-twofa/fleetd.sock"
    cases = {
        good + "    sockt: /x\n": ("p.yaml:6: unknown key store.postgresql.sockt"),
        good + "    offline: maybe\n": "p.yaml:6: store.postgresql.offline must be one of",
        "failmode: safe\n" + good: "p.yaml:3: store.backend postgresql is not allowed "
                                   "with failmode: safe",
        "store:\n  backend: postgresql\n": "p.yaml:1: store.postgresql needs dsn",
        "store:\n  postgresql: 3\n": "p.yaml:2: store.postgresql must be a mapping",
        good + "    admin_dsn: host=db user=adm password=hunter2\n":
            "p.yaml:6: store.postgresql.admin_dsn must not hold a password",
        good.replace("dsn: host=db", "dsn: postgresql://web1:pw@db/twofa #"):
            "p.yaml:4: store.postgresql.dsn must not hold a password",
    }
    for text, message in cases.items():
        with pytest.raises(PolicyErrors) as info:
            policyfile.parse_text(text, "p.yaml")
        assert info.value.message.startswith(message), (text, info.value.message)
