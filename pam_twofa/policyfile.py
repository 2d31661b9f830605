"""Reading the policy file: strict YAML with line numbers, and a compiled cache.

Parsing YAML costs ~13 ms per login (``import yaml`` alone), which the login
budget cannot pay. The validated policy is therefore cached with ``marshal``
in the root-only state directory, keyed by the policy file's identity (path,
device, inode, size, mtime and ctime in ns), its exact bytes, and the identity
of the code that compiles it (``code_key``): a login reads two small files; any
edit of the policy or of that code is a cache miss and a full strict parse.
``yaml`` loads only on a miss.

A policy file that stops validating (a typo) does not refuse every login: the
last policy that validated stays in force (``load_in_force``), re-checked by
the current code, and the error is reported with every login until it is
fixed. Only when no valid policy was ever compiled does the caller's failmode
decide.
"""

from __future__ import annotations

import marshal
import os
import stat

from pam_twofa import __version__, fsutil, policy
from pam_twofa.errors import PolicyError, PolicyErrors, StateError
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.paths import Paths

CACHE_VERSION = 2
# The modules whose code decides what a policy file compiles to (parse, validate,
# defaults, record shapes). tests/test_policy_core.py checks that this covers every
# pam_twofa module they import.
COMPILER = ("policyfile.py", "schema.py", "validators.py", "policy.py", "record.py",
            "errors.py")
LAST_VALID = "policy.last-valid"  # in the cache dir; kept across upgrades


class Loaded(Record):
    """The policy in force, and why it is not the file's (``error``) if it is not."""

    policy: policy.Policy
    error: str | None = None  # the file's problem, FILE:LINE: text (first one)
    since: float | None = None  # when the policy in force last validated


def code_key() -> tuple[Any, ...]:
    """The identity of the compiling code: (name, inode, size, mtime, ctime) each.

    Any write to a file changes its ctime (the kernel sets it; nobody can set it
    back), and dpkg installs every file as a new inode, so a changed validator
    or default is a new key. Five ``stat`` calls cost ~10 us; hashing the
    sources would cost ~3 ms (``hashlib``'s import) on every login.
    """
    here = os.path.dirname(__file__)
    out: list[Any] = [__version__]
    for name in COMPILER:
        try:
            st = os.stat(os.path.join(here, name))
        except OSError:
            out.append((name, None))
            continue
        out.append((name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _check_file(st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise PolicyError("not a regular file", path)
    if st.st_uid not in (0, os.geteuid()):
        raise PolicyError(f"owned by uid {st.st_uid}: must be root's", path)
    if st.st_mode & 0o022:
        raise PolicyError("writable by group or others: refusing it", path)


def parse_text(text: str, path: str) -> dict[str, Any]:
    """Validated policy data from YAML text; every problem names path and line."""
    import yaml

    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            lines: dict[tuple[str, ...], int] = {}
            data = _plain(loader, root, (), lines, path) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PolicyError(f"not valid YAML: {exc.problem or exc}", path, line) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}", path) from None
    except RecursionError:  # a recursive alias (a: &x [*x]) or absurd nesting
        raise PolicyError("not valid YAML: nested too deeply or a recursive alias", path) from None

    def where(key_path: tuple[str, ...]) -> int:
        while key_path and key_path not in lines:
            key_path = key_path[:-1]
        return lines.get(key_path, 1)

    from pam_twofa import schema

    plain, errors = schema.validate(data, where)
    if errors:
        failmode = data.get("failmode") if isinstance(data, dict) else None
        hint = failmode if failmode in ("secure", "safe") else None
        raise PolicyErrors([PolicyError(problem, path, line, hint) for line, problem in errors])
    return plain


def _plain(loader: Any, node: Any, key_path: tuple[str, ...],
           lines: dict[tuple[str, ...], int], path: str) -> Any:
    """Plain data from a YAML node, recording each key's line; duplicates refused."""
    import yaml

    lines.setdefault(key_path, node.start_mark.line + 1)
    if isinstance(node, yaml.CollectionNode) and node.tag not in (
            "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
        # Collections are walked here, not constructed, so refuse a tag we would ignore.
        raise PolicyError(f"tag {node.tag!r} is not allowed", path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise PolicyError(f"key {key!r} is not a name", path, line)
            if key in out:
                raise PolicyError(f"duplicate key {key!r}", path, line)
            lines[(*key_path, key)] = line
            out[key] = _plain(loader, value_node, (*key_path, key), lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(loader, item, (*key_path, f"[{i}]"), lines, path)  # a line per item
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _key(path: str, st: os.stat_result) -> tuple[Any, ...]:
    """The cache key: the file's identity, and the code's identity and record shapes."""
    identity = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return (CACHE_VERSION, code_key(), _shape(), *identity)


def _shape() -> tuple[Any, ...]:
    return tuple((name, cls.__record_fields__) for name, cls in policy.SECTIONS.items())


def _read_cache(paths: Paths, key: tuple[Any, ...],
                source: bytes) -> tuple[dict[str, Any], str | None, float] | None:
    """(compiled policy, the file's error, valid since) if the cache was made from
    exactly this file and code; ``error`` is set when the file is invalid and the
    compiled policy is the last valid one.

    The file's bytes are compared too: two edits within one clock tick can
    leave size and times unchanged, the content cannot.
    """
    try:
        raw = fsutil.read_file(paths.policy_cache, "policy cache")
        if raw is None:
            return None
        cached = marshal.loads(raw)
    except (StateError, ValueError, EOFError, TypeError):
        return None
    if (type(cached) is tuple and len(cached) == 5 and cached[0] == key
            and cached[1] == source and type(cached[2]) is dict
            and (cached[3] is None or type(cached[3]) is str)
            and type(cached[4]) is float):
        return cached[2], cached[3], cached[4]
    return None


def _compiled(plain: Any) -> Any:
    """``plain`` with only built-in types (marshal's), NameSets as their text (also
    inside ``services``)."""
    if isinstance(plain, policy.NameSet):
        return plain.text
    if isinstance(plain, dict):
        return {k: _compiled(v) for k, v in plain.items()}
    return plain


def _write(paths: Paths, name: str, data: tuple[Any, ...]) -> None:
    """Best effort: a read-only state dir only makes logins slower."""
    try:
        fsutil.ensure_dir(paths.state_dir)
        fsutil.ensure_dir(paths.cache_dir, "cache directory")
        fsutil.atomic_write(f"{paths.cache_dir}/{name}", marshal.dumps(data))
    except StateError:
        pass


def _cache_name(paths: Paths) -> str:
    return paths.policy_cache.rpartition("/")[2]


def _first(exc: PolicyError) -> str:
    """One line for a log: the first problem, FILE:LINE: text, and how many more."""
    errors: list[PolicyError] = getattr(exc, "errors", [exc])
    more = f" (and {len(errors) - 1} more: twofa-admin policy check)" if len(errors) > 1 else ""
    return errors[0].message.replace("\n", " ") + more


def _last_valid(paths: Paths, path: str) -> tuple[dict[str, Any], float] | None:
    """The last source of ``path`` that validated, checked again by this code."""
    try:
        raw = fsutil.read_file(f"{paths.cache_dir}/{LAST_VALID}", "last valid policy")
        if raw is None:
            return None
        saved = marshal.loads(raw)
    except (StateError, ValueError, EOFError, TypeError):
        return None
    if not (type(saved) is tuple and len(saved) == 3 and saved[0] == path
            and type(saved[1]) is bytes and type(saved[2]) is float):
        return None
    try:
        return parse_text(saved[1].decode("utf-8"), path), saved[2]
    except (PolicyError, UnicodeDecodeError):  # no longer valid for this code
        return None


def _compile(paths: Paths, use_cache: bool,
             fallback: bool) -> tuple[dict[str, Any], str | None, float | None]:
    """(validated data, the file's error when it is the last valid data, since)."""
    path = paths.policy
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        if paths.policy_explicit:
            raise PolicyError("no such file", path) from None
        return _defaults(paths, use_cache), None, None
    except OSError as exc:
        raise PolicyError(f"cannot open: {exc.strerror}", path) from None
    try:
        st = os.fstat(fd)
        _check_file(st, path)
        key = _key(path, st)
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read()
    finally:
        os.close(fd)
    if use_cache:
        hit = _read_cache(paths, key, raw)
        if hit is not None and (fallback or hit[1] is None):
            return hit
        if hit is not None:  # strict callers: the file's own error
            raise PolicyError(hit[1] or "invalid", failmode=None)
    try:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("not UTF-8 text", path) from None
        plain = parse_text(text, path)
    except PolicyError as exc:
        last = _last_valid(paths, path) if use_cache and fallback else None
        if last is None:
            raise
        error = _first(exc)
        _write(paths, _cache_name(paths), (key, raw, _compiled(last[0]), error, last[1]))
        return last[0], error, last[1]
    if use_cache:
        import time

        now = time.time()
        _write(paths, _cache_name(paths), (key, raw, _compiled(plain), None, now))
        _write(paths, LAST_VALID, (path, raw, now))
    return plain, None, None


def _defaults(paths: Paths, use_cache: bool) -> dict[str, Any]:
    """The built-in defaults (no file at the default path), cached like a file's
    policy, keyed by the code that compiles them: ``schema`` loads only on a miss."""
    key = (CACHE_VERSION, code_key(), _shape(), paths.policy, "absent")
    if use_cache:
        hit = _read_cache(paths, key, b"")
        if hit is not None and hit[1] is None:
            return hit[0]
    from pam_twofa import schema

    plain = schema.validate({})[0]
    if use_cache:
        import time

        _write(paths, _cache_name(paths), (key, b"", _compiled(plain), None, time.time()))
    return plain


def load(paths: Paths, use_cache: bool = True) -> policy.Policy:
    """The policy named by ``paths``, strictly: an invalid file raises PolicyError.

    Defaults when the default file is absent. Commands use this: an admin hears
    of a broken file at once.
    """
    return _build(paths, use_cache, fallback=False).policy


def load_in_force(paths: Paths) -> Loaded:
    """What logins use: the file's policy, or while the file is invalid the last
    valid one (with ``error`` set); raises only when there is none."""
    return _build(paths, True, fallback=True)


def _build(paths: Paths, use_cache: bool, fallback: bool) -> Loaded:
    plain, error, since = _compile(paths, use_cache, fallback)
    try:
        return Loaded(policy=policy.build(plain), error=error, since=since)
    except (KeyError, TypeError):  # a cache from another build: parse again
        if use_cache:
            return _build(paths, use_cache=False, fallback=False)
        raise
