"""TOTP (RFC 6238) over HOTP (RFC 4226), small enough for every login.

HMAC is built on the interpreter's own ``_sha1``/``_sha256``/``_sha512``
(RFC 2104 in six lines) because ``import hashlib``/``hmac`` loads OpenSSL and
costs ~3 ms per login; ``tests/test_totp.py`` checks it against the RFC vectors,
``hmac``, pyotp and oathtool. Codes are compared in constant time.
"""

from __future__ import annotations

import os
from _operator import _compare_digest as compare_digest

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_INDEX = {c: i for i, c in enumerate(_B32)}
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    _HashNew = Callable[[bytes], "_Hash"]

    class _Hash:
        def digest(self) -> bytes: ...


def _hash_new(algorithm: str) -> tuple[_HashNew, int]:
    """The hash constructor and block size for ``algorithm``."""
    try:
        if algorithm == "SHA1":
            from _sha1 import sha1 as new

            return new, 64
        if algorithm == "SHA256":
            from _sha256 import sha256 as new

            return new, 64
        if algorithm == "SHA512":
            from _sha512 import sha512 as new

            return new, 128
    except ImportError:  # an interpreter built without the builtin hashes
        import hashlib

        return getattr(hashlib, algorithm.lower()), (128 if algorithm == "SHA512" else 64)
    raise ValueError(f"unsupported algorithm {algorithm!r}")


def hmac_digest(key: bytes, message: bytes, algorithm: str = "SHA1") -> bytes:
    """HMAC (RFC 2104) of ``message`` under ``key``."""
    new, block = _hash_new(algorithm)
    if len(key) > block:
        key = new(key).digest()
    key = key.ljust(block, b"\0")
    inner = new(key.translate(_IPAD) + message).digest()
    return new(key.translate(_OPAD) + inner).digest()


def b32decode(text: str) -> bytes:
    """Decode base32 as authenticator apps write it: any case, spaces, no padding."""
    clean = text.replace(" ", "").replace("-", "").rstrip("=").upper()
    bits = 0
    value = 0
    out = bytearray()
    for char in clean:
        index = _B32_INDEX.get(char)
        if index is None:
            raise ValueError("secret is not base32")
        value = (value << 5) | index
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    if bits >= 5 or value & ((1 << bits) - 1):
        raise ValueError("secret has a bad base32 length or padding bits")
    return bytes(out)


def b32encode(data: bytes) -> str:
    """Base32 without padding, the form authenticator apps accept."""
    value = int.from_bytes(data, "big") if data else 0
    nbits = len(data) * 8
    pad = (-nbits) % 5
    value <<= pad
    nchars = (nbits + pad) // 5
    return "".join(_B32[(value >> (5 * (nchars - 1 - i))) & 31] for i in range(nchars))


def random_secret(nbytes: int = 20) -> str:
    """A new base32 secret: 160 random bits by default (RFC 4226 section 4)."""
    return b32encode(os.urandom(nbytes))


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """The HOTP value for ``counter`` (RFC 4226 section 5.3)."""
    mac = hmac_digest(key, counter.to_bytes(8, "big"), algorithm)
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(now: float, period: int = 30) -> int:
    """The RFC 6238 time counter T for ``now``."""
    return int(now // period)


def totp(key: bytes, now: float, digits: int = 6, period: int = 30, algorithm: str = "SHA1") -> str:
    """The TOTP value at ``now``."""
    return hotp(key, time_step(now, period), digits, algorithm)


def normalize_code(answer: str, digits: int) -> str | None:
    """The code typed by the user, or None when it cannot be a code.

    Spaces inside are accepted ("123 456"); anything but ASCII digits is not
    (``str.isdigit`` would let other scripts' digits through).
    """
    code = answer.strip().replace(" ", "")
    if len(code) != digits or not all("0" <= c <= "9" for c in code):
        return None
    return code


def match_step(
    key: bytes,
    code: str,
    now: float,
    *,
    digits: int = 6,
    period: int = 30,
    algorithm: str = "SHA1",
    window: int = 1,
) -> int | None:
    """The time step within ``window`` steps of ``now`` whose code is ``code``.

    Every step in the window is computed and compared (no early exit), so the
    time taken does not say which step matched. The caller refuses a step not
    newer than the last accepted one (replay); so when a code is that of two steps
    (one in a million per pair), the newest is returned: a code right for a fresh
    step is never refused as the replay of an older one.
    """
    center = time_step(now, period)
    found: int | None = None
    for step in range(center - window, center + window + 1):
        if step < 0:
            continue
        if compare_digest(hotp(key, step, digits, algorithm), code):
            found = step
    return found
