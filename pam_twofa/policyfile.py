"""Reading the policy file: strict YAML with line numbers, and a compiled cache.

Parsing YAML costs ~13 ms per login (``import yaml`` alone), which the login
budget cannot pay. The validated policy is therefore cached with ``marshal``
in the root-only state directory, keyed by the policy file's identity (path,
device, inode, size, mtime and ctime in ns), its exact bytes and the code's
version and record shapes: a login reads two small files; any edit of the
policy is a cache miss and a full strict parse. ``yaml`` loads only on a miss.
"""

from __future__ import annotations

import marshal
import os
import stat

from pam_twofa import __version__, fsutil, policy
from pam_twofa.errors import PolicyError, PolicyErrors, StateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.paths import Paths

CACHE_VERSION = 1


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
        return [_plain(loader, item, key_path, lines, path) for item in node.value]
    return loader.construct_object(node, deep=True)


def _key(path: str, st: os.stat_result) -> tuple[Any, ...]:
    """The cache key: the file's identity, and this code's version and record shapes."""
    shape = tuple((name, cls.__record_fields__) for name, cls in policy.SECTIONS.items())
    identity = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return (CACHE_VERSION, __version__, shape, *identity)


def _read_cache(paths: Paths, key: tuple[Any, ...], source: bytes) -> dict[str, Any] | None:
    """The compiled policy if the cache was made from exactly this file and code.

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
    if type(cached) is tuple and len(cached) == 3 and cached[0] == key and cached[1] == source:
        data: dict[str, Any] = cached[2]
        return data
    return None


def _write_cache(paths: Paths, key: tuple[Any, ...], source: bytes,
                 plain: dict[str, Any]) -> None:
    """Best effort: a read-only state dir only makes logins slower."""
    try:
        fsutil.ensure_dir(paths.state_dir)
        fsutil.ensure_dir(paths.cache_dir, "cache directory")
        compiled = {
            section: ({k: (v.text if isinstance(v, policy.NameSet) else v)
                       for k, v in values.items()} if isinstance(values, dict) else values)
            for section, values in plain.items()
        }
        fsutil.atomic_write(paths.policy_cache, marshal.dumps((key, source, compiled)))
    except StateError:
        pass


def load(paths: Paths, use_cache: bool = True) -> policy.Policy:
    """The policy named by ``paths``: defaults when the default file is absent."""
    path = paths.policy
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        if paths.policy_explicit:
            raise PolicyError("no such file", path) from None
        return policy.defaults()
    except OSError as exc:
        raise PolicyError(f"cannot open: {exc.strerror}", path) from None
    try:
        st = os.fstat(fd)
        _check_file(st, path)
        key = _key(path, st)
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read()
        plain = _read_cache(paths, key, raw) if use_cache else None
        if plain is None:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PolicyError("not UTF-8 text", path) from None
            plain = parse_text(text, path)
            if use_cache:
                _write_cache(paths, key, raw, plain)
    finally:
        os.close(fd)
    try:
        return policy.build(plain)
    except (KeyError, TypeError):  # a cache from another build: parse again
        if use_cache:
            return load(paths, use_cache=False)
        raise
