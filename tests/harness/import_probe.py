"""A pam_python module that runs pam_entry.py and records what the login imported.

Service line: ``auth required pam_python.so .../import_probe.py ENTRY=... out=FILE [args]``.
It executes pam_entry.py the way pam_python does (from source, with its real
``__file__``), snapshots ``sys.modules``, runs ``pam_sm_authenticate`` with the other
arguments and writes the names of the modules that appeared, one a line, to FILE.
"""

import sys


def pam_sm_authenticate(pamh, flags, argv):  # type: ignore[no-untyped-def]
    opts = dict(a.split("=", 1) for a in argv[1:] if a.startswith(("ENTRY=", "out=")))
    rest = [a for a in argv[1:] if not a.startswith(("ENTRY=", "out="))]
    entry = opts["ENTRY"]
    namespace = {"__file__": entry, "__name__": "pam_entry"}
    with open(entry, encoding="utf-8") as f:
        exec(compile(f.read(), entry, "exec"), namespace)
    before = set(sys.modules)
    result = namespace["pam_sm_authenticate"](pamh, flags, [entry, *rest])
    with open(opts["out"], "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(set(sys.modules) - before)) + "\n")
    return result


def pam_sm_setcred(pamh, flags, argv):  # type: ignore[no-untyped-def]
    return pamh.PAM_SUCCESS
