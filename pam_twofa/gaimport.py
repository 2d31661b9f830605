"""Reading a google-authenticator-libpam secret file (``~/.google_authenticator``).

The format, as the ``google-authenticator`` command writes it::

    JBSWY3DPEHPK3PXP...          line 1: the base32 secret
    " RATE_LIMIT 3 30            option lines, each starting with '" '
    " WINDOW_SIZE 17
    " DISALLOW_REUSE
    " TOTP_AUTH                  TOTP; " HOTP_COUNTER n marks an HOTP file
    12345678                     scratch codes: 8 digits each, one a line

Only TOTP files import (pam-twofa has no HOTP); ``STEP_SIZE`` carries over as
the period (digits 6, SHA1, as that module always uses). The parse is strict:
anything unexpected is an error naming the line, and nothing is written.
"""

from __future__ import annotations

from pam_twofa import enrollment
from pam_twofa.errors import UsageError
from pam_twofa.record import Record

MAX_FILE_BYTES = 64 * 1024
# Options google-authenticator-libpam writes or reads; their values do not carry over
# (pam-twofa's own replay rule, window and lockout apply) except STEP_SIZE.
KNOWN_OPTIONS = frozenset({"RATE_LIMIT", "WINDOW_SIZE", "DISALLOW_REUSE", "TOTP_AUTH",
                           "HOTP_COUNTER", "STEP_SIZE", "TIME_SKEW", "RESETTING_TIME_SKEW"})
SCRATCH_DIGITS = 8


class GaFile(Record):
    secret: str  # normalized base32, >= 128 bits
    period: int
    scratch_codes: tuple[str, ...]
    options: tuple[str, ...]  # option names seen, for the report


def parse(text: str, name: str = "file") -> GaFile:
    """Parse the file's text; raise ``UsageError`` naming the line on anything odd."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].strip():
        raise UsageError(f"{name}: empty: no secret on line 1")
    try:
        secret = enrollment.check_secret(lines[0].strip())
    except UsageError as exc:
        raise UsageError(f"{name}:1: {exc.message}") from None
    options: list[str] = []
    period = 30
    totp_auth = False
    codes: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        where = f"{name}:{number}"
        if line.startswith('" '):
            if codes:
                raise UsageError(f"{where}: option line after the scratch codes")
            words = line[2:].split()
            if not words or words[0] not in KNOWN_OPTIONS:
                raise UsageError(f"{where}: unknown option {line[2:].strip()!r}")
            option = words[0]
            options.append(option)
            if option == "HOTP_COUNTER":
                raise UsageError(f"{name}: a counter-based (HOTP) file; pam-twofa only does "
                                 "time-based codes: have the user enroll anew")
            if option == "TOTP_AUTH":
                totp_auth = True
            elif option == "STEP_SIZE":
                if len(words) != 2 or not words[1].isdigit() or not 1 <= int(words[1]) <= 3600:
                    raise UsageError(f"{where}: STEP_SIZE needs a number of seconds (1-3600)")
                period = int(words[1])
            continue
        code = line.strip()
        if len(code) != SCRATCH_DIGITS or not all("0" <= c <= "9" for c in code):
            raise UsageError(f"{where}: not an option line or an 8-digit scratch code")
        if code in codes:
            raise UsageError(f"{where}: scratch code listed twice")
        codes.append(code)
    if not totp_auth:
        raise UsageError(f"{name}: no '\" TOTP_AUTH' line: not a time-based secret file")
    return GaFile(secret=secret, period=period, scratch_codes=tuple(codes),
                  options=tuple(options))


def read(path: str) -> GaFile:
    """Read and parse ``path`` (at most 64 KiB, UTF-8)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: over {MAX_FILE_BYTES} bytes: not a secret file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    return parse(text.replace("\r\n", "\n"), path)
