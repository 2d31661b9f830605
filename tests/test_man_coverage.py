"""Issue 12 item 5: every subcommand and every long option of each command appears in
its man page (doc/man/*.scd), so the pages cannot drift from the click trees.

A subcommand counts as documented when the page shows it in bold, alone or after the
program name (``*status*``, ``*twofa-admin policy check*``, ``*trust list* _USER_``);
an option when the page shows ``*--name*``. The failure lists exactly what is
missing, where.
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
MAN = REPO / "doc" / "man"


def page_of(prog: str, fallback: str) -> Path:
    """The command's own page, or the page that documents it (twofa-enroll-service)."""
    own = sorted(MAN.glob(f"{prog}.*.scd"))
    return own[0] if own else MAN / fallback


# A program without a page of its own is documented in another (debian/rules links it).
DOCUMENTED_IN = {"twofa-enroll-service": "twofa-enroll.1.scd"}


def commands() -> list[tuple[str, click.Command, Path]]:
    """Every console script in pyproject.toml, as its click command and its page."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    found = []
    for prog, target in sorted(scripts.items()):
        module_name, func = target.split(":")
        module = importlib.import_module(module_name)
        command = getattr(module, func)
        if not isinstance(command, click.Command):  # main() wrapping the group "cli"
            command = module.cli
        found.append((prog, command, page_of(prog, DOCUMENTED_IN.get(prog, ""))))
    return found


def walk(command: click.Command, path: tuple[str, ...] = (),
         ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            if not sub.hidden:
                yield from walk(sub, (*path, name))


def long_options(command: click.Command) -> list[str]:
    ctx = click.Context(command, info_name="x")
    names: list[str] = []
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and not param.hidden:
            names += [n for n in (*param.opts, *param.secondary_opts) if n.startswith("--")]
    return names


def missing(prog: str, command: click.Command, text: str) -> list[str]:
    gaps = []
    for path, sub in walk(command):
        where = " ".join((prog, *path))
        if path:
            shown = re.escape(" ".join(path))
            if not re.search(rf"\*(?:{re.escape(prog)} )?{shown}[*\s]", text):
                gaps.append(f"subcommand '{where}'")
        for option in long_options(sub):
            if f"*{option}*" not in text:
                gaps.append(f"option '{option}' of '{where}'")
    return gaps


def test_every_subcommand_and_option_is_in_its_man_page() -> None:
    report = []
    progs = set()
    for prog, command, page in commands():
        progs.add(prog)
        assert page.is_file(), f"{prog}: no man page {page}"
        gaps = missing(prog, command, page.read_text())
        if gaps:
            report.append(f"{page.relative_to(REPO)} ({prog}) lacks: " + "; ".join(gaps))
    assert not report, "\n" + "\n".join(report)
    assert {"twofa-admin", "twofa-enroll", "twofa-clockcheck", "twofa-enroll-service"} <= progs


def test_the_check_sees_a_gap() -> None:
    """The matcher itself: a page without a subcommand or option is caught."""
    group = click.Group("g", commands=[click.Command("sub", params=[
        click.Option(["--flag/--no-flag"])], add_help_option=False)], add_help_option=False)
    assert missing("g", group, "*sub* [*--flag*]") == ["option '--no-flag' of 'g sub'"]
    assert missing("g", group, "*--flag* *--no-flag* *subway*") == ["subcommand 'g sub'"]
    assert missing("g", group, "*g sub* *--flag*, *--no-flag*") == []
    assert missing("g", group, "*sub* _X_ *--flag*/*--no-flag*") == []


# Where the package puts what (debian/rules and debian/*.install, *.links; examples are
# read from debian/libpam-twofa.examples): an
# installed path in a FILES section must come from one of these sources.
INSTALLED_FROM = {
    "/etc/pam-twofa/": "etc/pam-twofa/",
    "/lib/systemd/system/": "systemd/",
    "/usr/share/doc/libpam-twofa/examples/profile.d/": "enroll/",
    "/usr/share/pam-configs/": "debian/pam-configs/",
    # built from C by debian/rules (override_dh_auto_build/install)
    "/lib/<multiarch>/security/pam_twofa_guard.so": "guard/pam_twofa_guard.c",
}
RUNTIME = ("/var/lib/pam-twofa/", "/run/pam-twofa/",  # made by the programs, not installed
           "/etc/pam.d/")  # the system's, changed by twofa-admin pam


def files_section(text: str) -> list[str]:
    """The paths a page's FILES section lists (``_a_, _b_``: b is in a's directory)."""
    section = re.search(r"(?ms)^# FILES\n(.*?)(?=^# )", text)
    paths = []
    for line in (section.group(1) if section else "").splitlines():
        names = re.findall(r"_(\S+?)_(?=,|\s|$)", line) if line.startswith("_") else []
        for name in names:
            paths.append(name if name.startswith("/") else
                         os.path.join(os.path.dirname(paths[-1]), name))
    return paths


def test_files_sections_list_only_what_the_package_installs() -> None:
    links = [line.split()[1] for line in
             (REPO / "debian" / "libpam-twofa.links").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    examples = {
        "/usr/share/doc/libpam-twofa/examples/" + os.path.basename(src.rstrip("/")): src
        for src in (REPO / "debian" / "libpam-twofa.examples").read_text().split()
    }
    installed_from = {**INSTALLED_FROM, **examples}
    report = []
    for page in sorted(MAN.glob("*.scd")):
        for path in files_section(page.read_text()):
            if path.startswith(RUNTIME) or path.lstrip("/") in links:
                continue
            source = next((src + path[len(dst):] for dst, src in installed_from.items()
                           if path.startswith(dst)), None)
            if source is None or not (REPO / source).exists():
                report.append(f"{page.name}: FILES lists {path}, which the package does "
                              f"not install" + (f" (no {source})" if source else ""))
    assert not report, "\n" + "\n".join(report)
