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
``WINDOW_SIZE``, ``RATE_LIMIT`` and ``DISALLOW_REUSE`` do not carry over (the
policy's window and lockout apply, and a code is never accepted twice);
``notes`` says so to the admin.

The file lives in the user's home and root reads it: it is opened without
following symlinks, must be a regular file owned by the user being imported
and not writable by others (``pathsafety.read_owned``), so a symlink to
/etc/shadow, a FIFO or another user's file is refused.
"""

from __future__ import annotations

from pam_twofa import enrollment
from pam_twofa.errors import UsageError
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.policy import Policy

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
    window_size: int | None = None  # codes accepted around now (3: one step either side)
    rate_limit: tuple[int, int] | None = None  # (attempts, seconds)


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
    window: int | None = None
    rate: tuple[int, int] | None = None
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
            elif option == "WINDOW_SIZE":
                if len(words) != 2 or not words[1].isdigit() or not 1 <= int(words[1]) <= 100:
                    raise UsageError(f"{where}: WINDOW_SIZE needs a number of codes (1-100)")
                window = int(words[1])
            elif option == "RATE_LIMIT":  # "n secs" then the attempt timestamps
                if len(words) < 3 or not all(w.isdigit() for w in words[1:]):
                    raise UsageError(f"{where}: RATE_LIMIT needs attempts and seconds")
                rate = (int(words[1]), int(words[2]))
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
                  options=tuple(options), window_size=window, rate_limit=rate)


def read(path: str, owner: int) -> GaFile:
    """Read and parse ``path``: a regular file of uid ``owner`` (at most 64 KiB, ASCII)."""
    from pam_twofa import pathsafety

    data = pathsafety.read_owned(path, owner, MAX_FILE_BYTES, "google-authenticator file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    return parse(text.replace("\r\n", "\n"), path)


def notes(parsed: GaFile, policy: Policy) -> tuple[list[str], list[str]]:
    """(what did not carry over and why, warnings) for the admin, one line each."""
    totp, lock = policy.totp, policy.lockout
    info: list[str] = []
    warnings: list[str] = []
    if parsed.window_size is not None:
        info.append(f"WINDOW_SIZE {parsed.window_size}: not carried over; the policy's "
                    f"totp.window ({totp.window} step(s) either side) applies.")
        old_reach = (parsed.window_size - 1) // 2
        if old_reach > totp.window:
            warnings.append(
                f"the old file accepted codes up to {old_reach} step(s) either side of now, "
                f"the policy only {totp.window}: a phone whose clock is that far off will "
                "be refused (fix its clock, or raise totp.window in the policy).")
    if parsed.rate_limit is not None:
        attempts, seconds = parsed.rate_limit
        info.append(f"RATE_LIMIT {attempts} {seconds}: not carried over; the policy's lockout "
                    f"applies ({lock.max_failures} wrong codes within "
                    f"{lock.interval_seconds} s lock the second factor).")
    if "DISALLOW_REUSE" in parsed.options:
        info.append("DISALLOW_REUSE: not needed; pam-twofa never accepts a code twice.")
    else:
        info.append("no DISALLOW_REUSE: the old file let a code be used twice; "
                    "pam-twofa never accepts a code twice.")
    return info, warnings
