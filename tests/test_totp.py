"""pam_twofa.totp against the RFCs and three independent implementations.

Our HMAC is built on the interpreter's builtin hashes (to keep hashlib/OpenSSL off the
login path), so it is checked against the RFC 4226/6238 vectors, Python's ``hmac``,
pyotp and the real ``oathtool``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pam_twofa import totp
from tests.harness.pamenv import oathtool

SEEDS = {  # RFC 6238 Appendix B: the seed for each algorithm
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}

# RFC 6238 Appendix B: (time, algorithm, 8-digit TOTP)
RFC6238 = [
    (59, "SHA1", "94287082"),
    (59, "SHA256", "46119246"),
    (59, "SHA512", "90693936"),
    (1111111109, "SHA1", "07081804"),
    (1111111109, "SHA256", "68084774"),
    (1111111109, "SHA512", "25091201"),
    (1111111111, "SHA1", "14050471"),
    (1111111111, "SHA256", "67062674"),
    (1111111111, "SHA512", "99943326"),
    (1234567890, "SHA1", "89005924"),
    (1234567890, "SHA256", "91819424"),
    (1234567890, "SHA512", "93441116"),
    (2000000000, "SHA1", "69279037"),
    (2000000000, "SHA256", "90698825"),
    (2000000000, "SHA512", "38618901"),
    (20000000000, "SHA1", "65353130"),
    (20000000000, "SHA256", "77737706"),
    (20000000000, "SHA512", "47863826"),
]

# RFC 4226 Appendix D: counter -> (HMAC-SHA1, 6-digit HOTP), secret "12345678901234567890"
RFC4226 = [
    (0, "cc93cf18508d94934c64b65d8ba7667fb7cde4b0", "755224"),
    (1, "75a48a19d4cbe100644e8ac1397eea747a2d33ab", "287082"),
    (2, "0bacb7fa082fef30782211938bc1c5e70416ff44", "359152"),
    (3, "66c28227d03a2d5529262ff016a1e6ef76557ece", "969429"),
    (4, "a904c900a64b35909874b33e61c5938a8e15ed1c", "338314"),
    (5, "a37e783d7b7233c083d4f62926c7a25f238d0316", "254676"),
    (6, "bc9cd28561042c83f219324d3c607256c03272ae", "287922"),
    (7, "a4fb960c0bc06e1eabb804e5b397cdc4b45596fa", "162583"),
    (8, "1b3c89f65e6c9e883012052823443f048b4332db", "399871"),
    (9, "1637409809a679dc698207310c8c7fc07290d9e5", "520489"),
]

PYOTP_DIGEST = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


@pytest.mark.parametrize(("at", "algorithm", "expected"), RFC6238)
def test_rfc6238_vectors(at: int, algorithm: str, expected: str) -> None:
    seed = SEEDS[algorithm]
    assert totp.totp(seed, at, digits=8, algorithm=algorithm) == expected
    assert totp.time_step(at) == at // 30
    # the same vector from pyotp and from oathtool, for the same base32 secret
    b32 = totp.b32encode(seed)
    ours6 = totp.totp(seed, at, digits=6, algorithm=algorithm)
    assert ours6 == expected[-6:]
    assert pyotp.TOTP(b32, digits=8, digest=PYOTP_DIGEST[algorithm]).at(at) == expected
    assert oathtool(b32, at=at, digits=8, algorithm=algorithm) == expected


@pytest.mark.parametrize(("counter", "mac_hex", "expected"), RFC4226)
def test_rfc4226_hotp_vectors(counter: int, mac_hex: str, expected: str) -> None:
    key = SEEDS["SHA1"]
    message = counter.to_bytes(8, "big")
    assert totp.hmac_digest(key, message, "SHA1").hex() == mac_hex
    assert totp.hotp(key, counter) == expected
    assert pyotp.HOTP(totp.b32encode(key)).at(counter) == expected


def test_algorithms_and_unsupported() -> None:
    assert totp.ALGORITHMS == ("SHA1", "SHA256", "SHA512")
    with pytest.raises(ValueError, match="unsupported algorithm"):
        totp.hmac_digest(b"k", b"m", "MD5")


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(max_size=300),  # past both block sizes (64 and 128): the key is hashed
    message=st.binary(max_size=200),
    algorithm=st.sampled_from(totp.ALGORITHMS),
)
def test_hmac_matches_python_hmac(key: bytes, message: bytes, algorithm: str) -> None:
    expected = hmac.new(key, message, algorithm.lower()).digest()
    assert totp.hmac_digest(key, message, algorithm) == expected


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=64),
    at=st.integers(min_value=0, max_value=2**37),  # pyotp stops at year 9999
    digits=st.integers(min_value=6, max_value=8),
    period=st.sampled_from([15, 30, 60, 120]),
    algorithm=st.sampled_from(totp.ALGORITHMS),
)
def test_totp_matches_pyotp(key: bytes, at: int, digits: int, period: int,
                            algorithm: str) -> None:
    b32 = totp.b32encode(key)
    theirs = pyotp.TOTP(b32, digits=digits, interval=period, digest=PYOTP_DIGEST[algorithm])
    assert totp.totp(key, at, digits, period, algorithm) == theirs.at(at)


@pytest.mark.parametrize("algorithm", totp.ALGORITHMS)
@pytest.mark.parametrize("at", [0, 29, 30, 1700000000, 1796092393, 4102444800])
def test_totp_matches_oathtool(algorithm: str, at: int) -> None:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    key = totp.b32decode(secret)
    for digits, period in ((6, 30), (8, 60)):
        ours = totp.totp(key, at, digits=digits, period=period, algorithm=algorithm)
        theirs = oathtool(secret, at=at, digits=digits, period=period, algorithm=algorithm)
        assert ours == theirs, (at, digits, period)


def test_random_secret_is_160_bits_and_oathtool_agrees_now() -> None:
    secrets = {totp.random_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(secret) == 32 and len(totp.b32decode(secret)) == 20
    secret = secrets.pop()
    now = int(time.time())
    assert totp.totp(totp.b32decode(secret), now) == oathtool(secret, at=now)


# ------------------------------------------------------------------------------ base32
@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_b32_encode_decode_vs_base64(data: bytes) -> None:
    encoded = totp.b32encode(data)
    assert encoded == base64.b32encode(data).decode().rstrip("=")
    assert totp.b32decode(encoded) == data
    padded = base64.b32encode(data).decode()
    assert totp.b32decode(padded) == data
    assert totp.b32decode(padded.lower()) == data
    spaced = " ".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))
    assert totp.b32decode(spaced) == data


@settings(max_examples=300)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", max_size=40))
def test_b32_decode_any_alphabet_string(text: str) -> None:
    """Either refused, or what base64 decodes (ours also refuses non-zero pad bits)."""
    try:
        ours = totp.b32decode(text)
    except ValueError:
        padded = text + "=" * (-len(text) % 8)
        try:
            theirs = base64.b32decode(padded)
        except ValueError:
            return  # both refuse
        # base64 accepts non-canonical trailing bits; we must not: re-encoding differs
        assert totp.b32encode(theirs) != text
        return
    assert ours == base64.b32decode(text + "=" * (-len(text) % 8))


@pytest.mark.parametrize("bad", ["A", "ABC", "ABCDEF", "ABCDEFGH1", "ABCDEFG0", "AB!D", "AÉ"])
def test_b32_decode_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        totp.b32decode(bad)


def test_b32_decode_accepts_app_forms() -> None:
    assert totp.b32decode("jbsw-y3dp ehpk-3pxp") == base64.b32decode("JBSWY3DPEHPK3PXP")
    assert totp.b32decode("") == b""


# ------------------------------------------------------------------------- normalize_code
@pytest.mark.parametrize(
    ("answer", "digits", "expected"),
    [
        ("123456", 6, "123456"),
        ("123 456", 6, "123456"),
        (" 12 34 56 ", 6, "123456"),
        ("\t123456\n", 6, "123456"),
        ("12345678", 8, "12345678"),
        ("1234 5678", 8, "12345678"),
        ("12345", 6, None),
        ("1234567", 6, None),
        ("123456", 8, None),
        ("", 6, None),
        ("      ", 6, None),
        ("12a456", 6, None),
        ("-12345", 6, None),
        ("+12345", 6, None),
        ("١٢٣٤٥٦", 6, None),  # Arabic-Indic digits: str.isdigit() is True
        ("１２３４５６", 6, None),  # fullwidth
        ("۱۲۳۴۵۶", 6, None),  # extended Arabic-Indic
        ("¹²³⁴⁵⁶", 6, None),  # superscripts
        ("12345٦", 6, None),  # one foreign digit is enough to refuse
        ("123\x00456", 6, None),
        ("123\u00a0456", 6, None),  # a no-break space is not a space
    ],
)
def test_normalize_code(answer: str, digits: int, expected: str | None) -> None:
    assert totp.normalize_code(answer, digits) == expected


@given(st.text(max_size=12))
def test_normalize_code_only_ever_returns_ascii_digits(answer: str) -> None:
    code = totp.normalize_code(answer, 6)
    if code is not None:
        assert len(code) == 6 and code.isascii() and code.isdigit()
        assert code == answer.strip().replace(" ", "")


# ---------------------------------------------------------------------------- match_step
KEY = SEEDS["SHA1"]


@pytest.mark.parametrize(
    ("offset_steps", "window", "matched"),
    [(0, 0, True), (-1, 0, False), (1, 0, False), (-1, 1, True), (1, 1, True),
     (-2, 1, False), (2, 1, False), (-2, 2, True), (3, 2, False)],
)
def test_match_step_window(offset_steps: int, window: int, matched: bool) -> None:
    now = 1796092393.5
    step = totp.time_step(now) + offset_steps
    code = totp.hotp(KEY, step)
    others = {totp.hotp(KEY, totp.time_step(now) + d) for d in range(-3, 4) if d != offset_steps}
    assert code not in others  # no collision in this table
    found = totp.match_step(KEY, code, now, window=window)
    assert found == (step if matched else None)


def test_match_step_near_epoch_and_other_parameters() -> None:
    assert totp.match_step(KEY, totp.hotp(KEY, 0), 10.0, window=1) == 0  # no step -1
    code = totp.totp(SEEDS["SHA512"], 1000, digits=8, period=60, algorithm="SHA512")
    step = totp.match_step(SEEDS["SHA512"], code, 1000 + 60, digits=8, period=60,
                           algorithm="SHA512", window=1)
    assert step == 1000 // 60
