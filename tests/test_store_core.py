"""The per-user state store: names that never become bad paths, no-follow opens, owner and
mode checks against the effective uid, atomic writes under an flock, a strict schema."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pam_twofa import fastjson
from pam_twofa.clock import Clock
from pam_twofa.errors import CorruptState, InsecureState, InvalidUserName, LockTimeout, StateError
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.state import SCHEMA_VERSION, UserState
from pam_twofa.store import validate_user_name

REPO = Path(__file__).resolve().parent.parent
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(Paths(state_dir=str(tmp_path / "state")), Clock())


def user_file(store: FileStore, user: str) -> Path:
    return Path(store.paths.users_dir) / f"{user}.json"


def enroll(store: FileStore, user: str = "alice") -> None:
    with store.update(user) as st:
        st.enrolled = True
        st.secret = SECRET


# ------------------------------------------------------------------------------ names
@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "/etc/passwd", "ev\nil", "a" * 300, "a" * 257, "a" * 229, "", ".", "..",
     ".hidden", "a\x00b", "tab\there", "del\x7f", "c1\x85", "é" * 115, "bad\udcffutf8",
     "a/../../b"],
    ids=["dotdot", "slash", "absolute", "newline", "300-chars", "257-chars", "229-chars", "empty",
         "dot", "dotdot-only", "leading-dot", "nul", "tab", "del", "c1-control", "230-bytes",
         "surrogate", "mixed"],
)
def test_bad_user_names_refused(store: FileStore, name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidUserName):
        validate_user_name(name)
    with pytest.raises(InvalidUserName):
        store.load(name)
    with pytest.raises(InvalidUserName), store.update(name) as st:
        st.failures = 1
    with pytest.raises(InvalidUserName):
        store.delete(name)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert all(p.startswith("state") for p in written), written
    assert not any(p.startswith("state/users/") or p.startswith("state/locks/")
                   for p in written), written


@pytest.mark.parametrize(
    "name", ["alice", "a" * 228, "é" * 114, "first.last", "DOMAIN\\user", "user@realm",
             "x-y_z", "UPPER", "name.json"],
)
def test_good_user_names_accepted(store: FileStore, name: str) -> None:
    assert validate_user_name(name) == name
    enroll(store, name)
    loaded = store.load(name)
    assert loaded is not None and loaded.enrolled and loaded.user == name
    assert store.users() == [name]


def test_non_string_name_refused() -> None:
    with pytest.raises(InvalidUserName):
        validate_user_name(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------- files, owners, modes
def test_layout_modes(store: FileStore) -> None:
    assert store.load("alice") is None
    enroll(store)
    state_dir = Path(store.paths.state_dir)
    for d in (state_dir, state_dir / "users", state_dir / "locks"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        assert d.stat().st_uid == os.geteuid()
    f = user_file(store, "alice")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    data = json.loads(f.read_text())
    assert data["version"] == SCHEMA_VERSION and data["user"] == "alice"
    assert data["enrolled"] is True and data["secret"] == SECRET


def test_symlinked_state_file_refused(store: FileStore, tmp_path: Path) -> None:
    enroll(store, "bob")
    target = tmp_path / "planted.json"
    target.write_bytes(user_file(store, "bob").read_bytes().replace(b'"bob"', b'"alice"'))
    target.chmod(0o600)
    user_file(store, "alice").symlink_to(target)
    with pytest.raises(InsecureState, match="symbolic link"):
        store.load("alice")
    with pytest.raises(InsecureState), store.update("alice") as st:
        st.failures = 1
    assert user_file(store, "alice").is_symlink()  # not replaced, not followed


def test_symlinked_lock_file_refused(store: FileStore, tmp_path: Path) -> None:
    store.load("alice")  # the directories
    victim = tmp_path / "victim"
    (Path(store.paths.locks_dir) / "alice.lock").symlink_to(victim)
    with pytest.raises(StateError), store.update("alice") as st:
        st.failures = 1
    assert not victim.exists()


def test_symlinked_users_dir_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (state / "users").symlink_to(real)
    s = FileStore(Paths(state_dir=str(state)), Clock())
    with pytest.raises(InsecureState, match="not a directory"):
        s.load("alice")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_state_file_open_to_others_refused(store: FileStore, mode: int) -> None:
    enroll(store)
    user_file(store, "alice").chmod(mode)
    with pytest.raises(InsecureState, match="group/other access"):
        store.load("alice")


def test_state_file_of_another_owner_refused(store: FileStore) -> None:
    enroll(store)
    os.chown(user_file(store, "alice"), 4242, 4242)
    with pytest.raises(InsecureState, match="owned by uid 4242"):
        store.load("alice")


@pytest.mark.parametrize("which", ["state", "users", "locks"])
def test_dirs_of_wrong_mode_or_owner_refused(store: FileStore, which: str) -> None:
    enroll(store)
    fresh = FileStore(store.paths, Clock())  # directories are checked once per store
    d = Path(store.paths.state_dir)
    if which != "state":
        d = d / which
    d.chmod(0o755)
    with pytest.raises(InsecureState, match="group/other access"):
        fresh.load("alice")
    d.chmod(0o700)
    os.chown(d, 4242, 4242)
    with pytest.raises(InsecureState, match="owned by uid 4242"):
        FileStore(store.paths, Clock()).load("alice")
    os.chown(d, 0, 0)


def _load_as(state_dir: str, uid: int, out: multiprocessing.Queue[str]) -> None:
    os.setegid(uid)
    os.seteuid(uid)
    try:
        st = FileStore(Paths(state_dir=state_dir), Clock()).load("alice")
        out.put(f"ok enrolled={st.enrolled if st else None}")
    except Exception as exc:
        out.put(f"{type(exc).__name__}")


def test_owner_is_the_effective_uid(store: FileStore, tmp_path: Path) -> None:
    """Owned by uid 4242: refused for root, accepted for a process whose euid is 4242."""
    enroll(store)
    for path in Path(store.paths.state_dir).rglob("*"):
        os.lchown(path, 4242, 4242)
    os.chown(store.paths.state_dir, 4242, 4242)
    with pytest.raises(InsecureState):
        FileStore(store.paths, Clock()).load("alice")
    opened = []  # pytest's 0700 dirs: let uid 4242 traverse them, then take it back
    for d in [tmp_path, *tmp_path.parents]:
        mode = stat.S_IMODE(d.stat().st_mode)
        if not mode & stat.S_IXOTH:
            opened.append((d, mode))
            d.chmod(mode | stat.S_IXOTH)
    try:
        ctx = multiprocessing.get_context("fork")
        out: multiprocessing.Queue[str] = ctx.Queue()
        proc = ctx.Process(target=_load_as, args=(store.paths.state_dir, 4242, out))
        proc.start()
        proc.join(30)
        assert out.get(timeout=5) == "ok enrolled=True"
    finally:
        for d, mode in opened:
            d.chmod(mode)


# --------------------------------------------------------------------------- corruption
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "not valid JSON"),
        ('{"version": 1, "user": "alice",', "not valid JSON"),
        ("not json", "not valid JSON"),
        ('{"version": 1, "user": "alice"} {}', "not valid JSON"),
        ('{"version": 1, "user": "alice", "failures": NaN}', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"user": "alice"}', "schema version None"),
        ('{"version": 3, "user": "alice"}', "schema version 3"),
        ('{"version": 0, "user": "alice"}', "schema version 0"),
        ('{"version": "1", "user": "alice"}', "schema version '1'"),
        ('{"version": 1, "user": "bob"}', "names another user"),
        ('{"version": 1, "user": "alice", "enrolled": "true"}', "bad value for 'enrolled'"),
        ('{"version": 1, "user": "alice", "failures": 1.5}', "bad value for 'failures'"),
        ('{"version": 1, "user": "alice", "failures": true}', "bad value for 'failures'"),
        ('{"version": 1, "user": "alice", "recent_failures": ["x"]}', "recent_failures"),
        ('{"version": 1, "user": "alice", "colour": "red"}', "unknown field 'colour'"),
        ('{"version": 1, "user": "alice", "enrolled": true}', "enrolled without a secret"),
        ('{"version": 1, "user": "alice", "enrolled": true, "secret": "!!"}', "not base32"),
        ('{"version": 1, "user": "alice", "digits": 5}', "bad TOTP parameters"),
        ('{"version": 1, "user": "alice", "period": 0}', "bad TOTP parameters"),
        ('{"version": 1, "user": "alice", "algorithm": "MD5"}', "bad TOTP parameters"),
    ],
)
def test_corrupt_or_off_schema_state(store: FileStore, content: str, needle: str) -> None:
    enroll(store)
    f = user_file(store, "alice")
    f.write_text(content)
    with pytest.raises(CorruptState, match=needle.replace("(", r"\(")):
        store.load("alice")
    with pytest.raises(CorruptState), store.update("alice") as st:
        st.failures = 0
    assert f.read_text() == content  # never overwritten with a fresh "not enrolled" state


# ------------------------------------------------------------------------- atomic writes
def test_update_writes_atomically(store: FileStore) -> None:
    enroll(store)
    f = user_file(store, "alice")
    inode = f.stat().st_ino
    with store.update("alice") as st:
        st.failures = 3
    assert f.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert json.loads(f.read_text())["failures"] == 3
    assert sorted(p.name for p in f.parent.iterdir()) == ["alice.json"]  # no temp left


def test_no_write_without_change_or_on_error(store: FileStore) -> None:
    with store.update("alice"):
        pass
    assert not user_file(store, "alice").exists()  # nothing for a user with no state
    enroll(store)
    f = user_file(store, "alice")
    before = (f.stat().st_ino, f.read_bytes())
    with store.update("alice"):
        pass
    with pytest.raises(RuntimeError), store.update("alice") as st:
        st.failures = 99
        raise RuntimeError("a bug half-way")
    assert (f.stat().st_ino, f.read_bytes()) == before


_FULL_DISK = """
import resource, signal, sys
sys.path.insert(0, sys.argv[1])
from pam_twofa.clock import Clock
from pam_twofa.errors import StateError
from pam_twofa.paths import Paths
from pam_twofa.filestore import FileStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
store = FileStore(Paths(state_dir=sys.argv[2]), Clock())
try:
    with store.update("alice") as st:
        st.failures = 7
except StateError as exc:
    print("StateError", exc)
"""


def test_failed_write_keeps_the_old_file(store: FileStore) -> None:
    """A write that fails (here: file size limit, like a full disk) leaves the old state
    whole and no temp file: google-authenticator truncated secrets to zero bytes."""
    enroll(store)
    f = user_file(store, "alice")
    before = f.read_bytes()
    assert len(before) > 64
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(REPO), store.paths.state_dir],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("StateError cannot write"), done.stdout
    assert f.read_bytes() == before
    assert sorted(p.name for p in f.parent.iterdir()) == ["alice.json"]


def _bump(state_dir: str, n: int) -> None:
    s = FileStore(Paths(state_dir=state_dir), Clock())
    for _ in range(n):
        with s.update("alice") as st:
            st.failures += 1


def test_concurrent_updates_lose_nothing(store: FileStore) -> None:
    enroll(store)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(store.paths.state_dir, 25)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    st = store.load("alice")
    assert st is not None and st.failures == 200
    assert fastjson.loads(user_file(store, "alice").read_bytes())["failures"] == 200


def test_lock_wait_is_bounded(store: FileStore) -> None:
    enroll(store)
    quick = FileStore(store.paths, Clock(), lock_timeout=0.3)
    fd = os.open(f"{store.paths.locks_dir}/alice.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match=r"held for over 0\.3 s"), quick.update("alice"):
            pass
        assert time.monotonic() - t0 < 0.3 + 2.0  # timeout + slack: never hangs a login
        assert quick.load("alice") is not None  # reading needs no lock
    finally:
        os.close(fd)
    with quick.update("alice") as st:  # released: works again
        st.failures = 1


# ------------------------------------------------------------------ delete, list, round trip
def test_delete_and_users(store: FileStore) -> None:
    assert store.users() == []
    for name in ("carol", "alice", "bob"):
        enroll(store, name)
    (Path(store.paths.users_dir) / ".alice.json.123.tmp").write_text("{}")
    assert store.users() == ["alice", "bob", "carol"]
    assert store.delete("bob") is True
    assert store.delete("bob") is False
    assert store.load("bob") is None
    assert store.users() == ["alice", "carol"]


def test_round_trip_every_field(store: FileStore) -> None:
    with store.update("alice") as st:
        st.enrolled, st.secret, st.digits, st.period, st.algorithm = True, SECRET, 8, 60, "SHA512"
        st.enrolled_at, st.last_step, st.failures = 1.5, 42, 3
        st.recent_failures, st.lock_level, st.locked_until = [1.0, 2.0], 2, 99.5
        st.first_seen, st.last_success = 10, 20.5
        st.recovery_codes, st.devices, st.email = ["h1"], [{"id": "d"}], "a@example.org"
        st.pending, st.emergency, st.sends = {"secret": SECRET}, {"code": "h"}, [5.0]
        expected = st.to_plain()
    loaded = store.load("alice")
    assert loaded is not None and loaded.to_plain() == expected
    assert UserState.from_plain("alice", expected).to_plain() == expected


def test_file_store_implements_every_operation_and_none_hands_out_a_secret(
        tmp_path: Path) -> None:
    """The interface a second backend implements (issue 14): FileStore overrides every
    operation of Store, and a login's view of a user carries no secret, code or hash."""
    import inspect

    from pam_twofa.clock import FixedClock
    from pam_twofa.store import LoginView, Store

    ops = {name for name, fn in vars(Store).items()
           if inspect.isfunction(fn) and not name.startswith("_")}
    assert {"view", "grace_start", "check_code", "skip_trusted", "add_trusted",
            "emergency_reserve", "emergency_check", "enroll_inline", "status", "unlock",
            "reset", "begin_enrollment", "confirm_enrollment", "new_recovery_codes",
            "disable", "provision", "reset_recovery_codes", "devices", "revoke_devices",
            "users"} <= ops
    missing = sorted(n for n in ops - {"reset"} if n not in vars(FileStore))
    assert missing == [], missing
    store = FileStore(Paths(state_dir=str(tmp_path / "s")), FixedClock(1e9))
    with store.update("alice") as st:
        st.enrolled, st.secret = True, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        st.recovery_codes = ["scrypt$16384$8$1$AAAA$BBBB"]
        st.email = "alice@example.org"
    view = store.view("alice", 1e9)
    assert isinstance(view, LoginView) and view.enrolled and view.email is True
    shown = repr(view)
    assert "GEZDGNBV" not in shown and "scrypt" not in shown and "example.org" not in shown
    assert store.view("nobody", 1e9) is None
    assert store.unlock("alice") and not store.unlock("nobody")
    assert store.status("alice", 1e9)["enrolled"] is True
    assert store.reset("alice") and store.view("alice", 1e9) is None
