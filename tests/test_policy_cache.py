"""The compiled policy cache follows the code that compiles it (issue 11, finding 9),
and the last valid policy stays in force while the file is invalid (issue 12, item 12).

The code tests run a copy of the package in a fresh interpreter, as an upgrade would
leave it: same cache directory, one changed default, the same size and mtime
(reproducible builds clamp every mtime to the changelog date).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pam_twofa import policyfile
from pam_twofa.errors import PolicyError
from pam_twofa.paths import Paths
from tests.policy_support import paths

__all__ = ["paths"]  # the fixture

REPO = Path(__file__).resolve().parent.parent
PROBE = ("import sys; from pam_twofa import policyfile; from pam_twofa.paths import Paths; "
         "p = policyfile.load(Paths(policy=sys.argv[1], policy_explicit=True, "
         "state_dir=sys.argv[2])); print(p.lockout.max_failures)")


def max_failures(package_root: Path, policy: Path, state: Path) -> int:
    res = subprocess.run([sys.executable, "-c", PROBE, str(policy), str(state)],
                         cwd=package_root, capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"},
                         check=False)
    assert res.returncode == 0, res.stderr
    return int(res.stdout)


def test_changed_default_in_an_upgraded_copy_is_not_served_from_the_cache(
        tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "pam_twofa", copy / "pam_twofa",
                    ignore=shutil.ignore_patterns("__pycache__"))
    policy = tmp_path / "policy.yaml"
    policy.write_text("mandatory: {scope: admins}\n")
    policy.chmod(0o644)
    state = tmp_path / "state"
    assert max_failures(copy, policy, state) == 5  # compiled and cached
    assert (state / "cache/policy.marshal").is_file()
    schema = copy / "pam_twofa/schema.py"
    before = schema.stat()
    text = schema.read_text()
    old = '"max_failures": Int(5, '
    assert text.count(old) == 1
    schema.write_text(text.replace(old, '"max_failures": Int(7, '))  # same size
    os.utime(schema, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime
    assert (schema.stat().st_size, schema.stat().st_mtime_ns) == (
        before.st_size, before.st_mtime_ns)
    assert max_failures(copy, policy, state) == 7  # the new default, not the cached 5


def _imports(module: str) -> set[str]:
    """pam_twofa modules that ``module`` imports (anywhere in it, lazily too)."""
    tree = ast.parse((REPO / "pam_twofa" / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pam_twofa":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("pam_twofa."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("pam_twofa.")}
    return found


def test_the_code_key_covers_every_module_that_compiles_a_policy() -> None:
    """schema and policy (validation, defaults, records) and what they import."""
    todo, seen = ["schema", "policy", "policyfile"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name != "policyfile":  # its own helpers (fsutil, paths) only read and write files
            todo += sorted(_imports(name))
    assert {f"{name}.py" for name in seen} <= set(policyfile.COMPILER), seen


def test_code_key_is_stable_and_names_every_file() -> None:
    first = policyfile.code_key()
    assert first == policyfile.code_key()
    assert len(first) == 1 + len(policyfile.COMPILER) and all(
        entry[1] is not None for entry in first[1:])


# ------------------------------------------------------------------ last valid policy
def test_a_typo_keeps_the_last_valid_policy_in_force(paths: Paths) -> None:
    Path(paths.policy).write_text("mandatory:\n  scope: admins\nlockout:\n  max_failures: 3\n")
    assert policyfile.load_in_force(paths).error is None
    Path(paths.policy).write_text("mandatory:\n  scope: admins\nlockout:\n  max_failurs: 4\n")
    loaded = policyfile.load_in_force(paths)
    assert loaded.policy.lockout.max_failures == 3 and loaded.policy.mandatory.scope == "admins"
    assert loaded.error is not None
    assert loaded.error.startswith(f"{paths.policy}:4: unknown key lockout.max_failurs")
    assert loaded.since is not None and abs(loaded.since - time.time()) < 60
    again = policyfile.load_in_force(paths)  # a cache hit now: no parse, same answer
    assert again == loaded
    with pytest.raises(PolicyError, match="max_failurs"):  # commands stay strict
        policyfile.load(paths)
    Path(paths.policy).write_text("lockout:\n  max_failures: 6\n")  # fixed
    fixed = policyfile.load_in_force(paths)
    assert fixed.error is None and fixed.policy.lockout.max_failures == 6


def test_no_valid_policy_ever_raises(paths: Paths) -> None:
    Path(paths.policy).write_text("mandatory:\n  scop: admins\n")
    with pytest.raises(PolicyError, match=r":2: unknown key mandatory\.scop"):
        policyfile.load_in_force(paths)


def test_the_last_valid_policy_is_checked_again_by_the_current_code(paths: Paths) -> None:
    """A saved source that this code no longer accepts is no fallback."""
    Path(paths.policy).write_text("lockout:\n  max_failures: 3\n")
    policyfile.load_in_force(paths)
    last = Path(paths.cache_dir) / policyfile.LAST_VALID
    import marshal

    path, _source, at = marshal.loads(last.read_bytes())
    last.write_bytes(marshal.dumps((path, b"lockout:\n  max_failures: 0\n", at)))
    Path(paths.policy).write_text("lockout:\n  max_failures: x\n")
    with pytest.raises(PolicyError, match="max_failures"):
        policyfile.load_in_force(paths)


def test_the_last_valid_policy_of_another_file_is_no_fallback(paths: Paths,
                                                              tmp_path: Path) -> None:
    Path(paths.policy).write_text("lockout:\n  max_failures: 3\n")
    policyfile.load_in_force(paths)
    other = tmp_path / "other.yaml"
    other.write_text("lockout: [\n")
    other.chmod(0o644)
    with pytest.raises(PolicyError, match="not valid YAML"):
        policyfile.load_in_force(paths.replace(policy=str(other)))
