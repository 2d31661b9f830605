"""Recovery codes: ten one-time 10-digit codes, kept only as salted scrypt hashes.

Ten digits (33 bits each) so a recovery code can never be mistaken for a 6-8
digit TOTP code; codes imported from google-authenticator keep their 8 digits.
Each stored entry is ``scrypt$N$r$p$salt$hash`` (base64, own 16-byte salt), so
the cost can be raised later without breaking stored codes. A check hashes the
answer against every entry, with no early exit, and compares in constant time:
the time taken does not say whether or which code matched. With N=2**14, r=8
that is ~32 ms an entry, ~0.33 s for ten on a 2-core test machine.

Loaded only when an answer is not a TOTP code (``hashlib`` costs ~3 ms to
import, too much for every login).
"""

from __future__ import annotations

import base64
import hashlib
import os
from _operator import _compare_digest as compare_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.state import UserState

COUNT = 10
DIGITS = 10
MIN_DIGITS = 8  # google-authenticator scratch codes
SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32


def normalize(answer: str) -> str | None:
    """The code typed (spaces and dashes allowed), or None when it cannot be one."""
    code = answer.strip().replace(" ", "").replace("-", "")
    if not MIN_DIGITS <= len(code) <= DIGITS or not all("0" <= c <= "9" for c in code):
        return None
    return code


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(code.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                          maxmem=256 * 1024 * 1024)


def hash_code(code: str) -> str:
    """The stored form of one code."""
    salt = os.urandom(SALT_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(_derive(code, salt, N, R, P))}"


def _parse(entry: str) -> tuple[bytes, int, int, int, bytes] | None:
    parts = entry.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 4):
        return None  # refuse parameters that would make a check hang
    return salt, n, r, p, key


def new_codes(count: int = COUNT) -> list[str]:
    """``count`` fresh codes of ``DIGITS`` digits (uniform, no leading-zero loss)."""
    limit = 10**DIGITS
    return [str(int.from_bytes(os.urandom(8), "big") % limit).zfill(DIGITS)
            for _ in range(count)]


def replace(state: UserState, codes: list[str] | None = None) -> list[str]:
    """Give the user a new set of codes (old ones stop working); return them in clear."""
    fresh = new_codes() if codes is None else codes
    state.recovery_codes = [hash_code(code) for code in fresh]
    return fresh


def find(state: UserState, answer: str) -> int | None:
    """Index of the stored code ``answer`` matches, or None. Checks every entry."""
    code = normalize(answer)
    if code is None or not state.recovery_codes:
        return None
    found: int | None = None
    for index, entry in enumerate(state.recovery_codes):
        parsed = _parse(entry)
        if parsed is None:
            continue
        salt, n, r, p, key = parsed
        if compare_digest(_derive(code, salt, n, r, p), key) and found is None:
            found = index
    return found


def consume(state: UserState, answer: str) -> int | None:
    """Use up the code ``answer`` matches; return how many are left, or None.

    Call inside ``Store.update`` so the removal is committed under the lock.
    """
    index = find(state, answer)
    if index is None:
        return None
    del state.recovery_codes[index]
    return len(state.recovery_codes)


def groups(code: str) -> str:
    """A 10-digit code as ``12345-67890`` for reading; 8-digit ones stay as they are."""
    return f"{code[:5]}-{code[5:]}" if len(code) == DIGITS else code
