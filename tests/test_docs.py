"""The admin documentation: generated policy reference in step with the schema, and
every man page (ours and other issues') built with scdoc and rendered by man(1)
without a single warning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pam_twofa import policyfile, schema

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "tools" / "gen_policy_docs.py"
POLICY_YAML = REPO / "doc" / "policy.reference.yaml"  # generated, every key
CONFFILE = REPO / "etc" / "pam-twofa" / "policy.yaml"  # short, by hand
POLICY_MAN = REPO / "doc" / "man" / "pam-twofa-policy.5.scd"
MAN_SOURCES = sorted((REPO / "doc" / "man").glob("*.scd"))
RENDER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "MANWIDTH": "80",
    "MANPAGER": "cat",
    "PAGER": "cat",
    "HOME": "/nonexistent",
}
# issue 7: every page has these; EXIT STATUS for commands (a PAM module's page says
# RETURN VALUES, as Linux-PAM's own pages do).
REQUIRED = ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILES", "EXAMPLES", "SEE ALSO")


def gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GEN), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)


def uncomment(text: str) -> str:
    """What the shipped file says to do: drop one leading '#' from every line."""
    return re.sub(r"(?m)^#", "", text)


def test_generated_docs_are_current() -> None:
    result = gen("--check")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_check_fails_on_stale_files_and_regenerates(tmp_path: Path) -> None:
    shipped = tmp_path / "doc/policy.reference.yaml"
    man = tmp_path / "doc/man/pam-twofa-policy.5.scd"
    shipped.parent.mkdir(parents=True)
    man.parent.mkdir(parents=True)
    shutil.copy(POLICY_YAML, shipped)
    shutil.copy(POLICY_MAN, man)
    assert gen("--check", "--root", str(tmp_path)).returncode == 0

    shipped.write_text(shipped.read_text().replace("max_failures: 5", "max_failures: 6"))
    man.write_text(man.read_text().replace("*lock_seconds* (", "*lock_secs* ("))
    result = gen("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert f"{shipped}: out of date" in result.stderr
    assert f"{man}: out of date" in result.stderr
    assert "-#   max_failures: 6" in result.stderr  # the diff shows what changed

    assert gen("--root", str(tmp_path)).returncode == 0
    assert shipped.read_text() == POLICY_YAML.read_text()
    assert man.read_text() == POLICY_MAN.read_text()
    assert gen("--check", "--root", str(tmp_path)).returncode == 0


def test_shipped_policy_as_is_is_the_default_policy() -> None:
    text = POLICY_YAML.read_text()
    assert yaml.safe_load(text) is None  # everything commented out
    assert policyfile.parse_text(text, str(POLICY_YAML)) == schema.validate({})[0]


def test_shipped_policy_uncommented_sets_every_key_to_its_default() -> None:
    text = uncomment(POLICY_YAML.read_text())
    raw = yaml.safe_load(text)
    expected_keys = {name: set(checks) for name, (_cls, checks) in schema.SCHEMA.items()}
    assert {k: set(v) for k, v in raw.items() if k not in schema.TOP_LEVEL} == expected_keys
    assert raw["failmode"] == schema.FAILMODE.default
    assert raw["exempt_networks"] == [] and raw["services"] == {}  # none by default
    # every per-service key is described (as prose: a listed service is not the default)
    text = POLICY_YAML.read_text()
    for key in schema.SERVICE:
        assert re.search(rf"(?m)^##      {key}: \S+ +# ", text), key
    for name, (_cls, checks) in schema.SCHEMA.items():
        for key, check in checks.items():
            if isinstance(check, schema.Nested):
                value, errors = check.check_all(raw[name][key], lambda p: 0, (name, key))
                assert errors == [] and set(raw[name][key]) == set(check.checks)
            else:
                value = check(raw[name][key])
            assert value == check.default, (name, key, raw[name][key])
    assert policyfile.parse_text(text, "policy.yaml") == schema.validate({})[0]


def test_the_conffile_is_short_and_the_built_in_policy() -> None:
    """A conffile changes rarely (each change stops `apt-get -y` at a prompt): the few
    keys admins set first, commented out at their defaults, and where the rest is."""
    text = CONFFILE.read_text()
    assert len(text.splitlines()) <= 30
    assert yaml.safe_load(text) is None
    assert policyfile.parse_text(text, str(CONFFILE)) == schema.validate({})[0]
    raw = yaml.safe_load(uncomment(text))
    assert set(raw) == {"mandatory", "enrollment", "failmode"}
    for name, keys in raw.items():
        if name == "failmode":
            assert keys == schema.FAILMODE.default
            continue
        checks = schema.SCHEMA[name][1]
        for key, value in keys.items():
            assert checks[key](value) == checks[key].default, (name, key, value)
    assert "/usr/share/doc/libpam-twofa/examples/policy.reference.yaml" in text
    examples = (REPO / "debian/libpam-twofa.examples").read_text().split()
    assert "doc/policy.reference.yaml" in examples


def test_shipped_policy_lines_say_default_and_doc() -> None:
    lines = POLICY_YAML.read_text().splitlines()
    check = schema.SCHEMA["lockout"][1]["max_failures"]
    line = next(x for x in lines if x.startswith("#   max_failures:"))
    assert re.fullmatch(r"#   max_failures: 5 +# " + re.escape(check.doc), line)
    assert any(re.fullmatch(r"#failmode: secure +# .+", x) for x in lines)
    prose = [x for x in lines if x.startswith("##")]
    assert any("100 guesses in all" in x for x in prose)  # lockout.guesses_per_year
    assert all(x.startswith("#") or not x for x in lines)


def test_policy_man_page_documents_every_key() -> None:
    text = POLICY_MAN.read_text()
    generated = text.split("; BEGIN GENERATED KEYS")[1].split("; END GENERATED KEYS")[0]
    blocks = re.split(r"(?m)^## ", generated)[1:]
    documented = {b.split("\n", 1)[0]: set(re.findall(r"(?m)^\*([\w.]+)\* \(", b))
                  for b in blocks}
    expected: dict[str, set[str]] = {name: set() for name in schema.SCHEMA}
    for name, (_cls, checks) in schema.SCHEMA.items():
        for key, check in checks.items():  # a nested mapping's keys as KEY.SUB
            subs = check.checks if isinstance(check, schema.Nested) else None
            expected[name] |= {f"{key}.{sub}" for sub in subs} if subs else {key}
    expected["failmode"] = {"failmode"}
    expected["exempt_networks"] = {"exempt_networks"}
    expected["services.NAME"] = set(schema.SERVICE)
    assert documented == expected
    assert "*max_failures* (whole number from 1 to 1000; default: 5)" in generated
    assert "*admin_groups* (list of names; default: [sudo, wheel])" in generated


@pytest.fixture(scope="module")
def built_man(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make man`` into a temp dir: the real target, without touching build/."""
    out = tmp_path_factory.mktemp("man")
    result = subprocess.run(["make", "--no-print-directory", "man", f"MAN_DIR={out}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return out


def test_make_man_builds_every_page(built_man: Path) -> None:
    names = {p.name for p in built_man.iterdir()}
    assert names == {p.stem for p in (REPO / "doc" / "man").glob("*.scd")}
    assert {"pam_twofa.8", "twofa-admin.8", "pam-twofa-policy.5"} <= names


@pytest.mark.parametrize("source", MAN_SOURCES, ids=lambda p: p.stem)
def test_man_page_renders_without_warnings(source: Path, built_man: Path) -> None:
    page = built_man / source.stem
    name, section = source.stem.rsplit(".", 1)
    first = source.read_text().splitlines()[0]
    assert first.startswith(f"{name}({section})"), first

    env = {**RENDER_ENV}
    result = subprocess.run(["man", "--warnings=w", "-l", str(page)], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    headings = re.findall(r"(?m)^([A-Z][A-Z ]+)$", result.stdout)
    for heading in REQUIRED:
        assert heading in headings, (source.name, heading, headings)
    if section in ("1", "8"):
        assert "EXIT STATUS" in headings or "RETURN VALUES" in headings, headings
    width = max(len(line) for line in result.stdout.splitlines())
    assert width <= 80, f"{source.name}: a rendered line is {width} columns wide"

    groff = subprocess.run(["groff", "-ww", "-mandoc", "-z", str(page)], capture_output=True,
                           text=True, env=env, timeout=60, check=False)
    assert groff.returncode == 0
    assert groff.stderr == "", groff.stderr


def test_rendered_policy_page_has_the_reference() -> None:
    """pam-twofa-policy(5) through man: the generated keys show as text, not markup."""
    page = subprocess.run(["scdoc"], input=POLICY_MAN.read_text(), capture_output=True,
                          text=True, timeout=60, check=True).stdout
    result = subprocess.run(["man", "-l", "-"], input=page, capture_output=True, text=True,
                            env=RENDER_ENV, timeout=60, check=True)
    text = re.sub(r"\s+", " ", re.sub(r"\u2010\n\s*", "", result.stdout))
    assert "max_failures (whole number from 1 to 1000; default: 5)" in text
    assert "at most 100 guesses in all" in text
    assert "max_consecutive_failures (whole number from 1 to 100; default: 100)" in text
    assert os.path.basename(str(POLICY_YAML)) in text
