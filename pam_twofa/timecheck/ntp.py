"""One SNTP exchange (RFC 4330 / 5905 client mode), with era-aware timestamps.

An NTP timestamp holds seconds since 1900 in 32 bits: the count wraps on
2036-02-07 06:28:16 UTC (the start of era 1). ntplib converts every timestamp as
era 0 (a reply after the wrap reads as 1900) and cannot even pack its request
then (``struct.error``), so the exchange is done here: each timestamp is placed
in the era that puts it nearest the local clock (RFC 5905, section 6), which is
right while the local clock is within 68 years of the truth. Not on the login
path (``twofa-clockcheck`` only).
"""

from __future__ import annotations

import math
import os
import struct
import time

from pam_twofa.record import Record

NTP_DELTA = 2208988800  # 1900-01-01 -> 1970-01-01, seconds
ERA = 1 << 32  # seconds in one NTP era (~136 years)
ERA1_START = ERA - NTP_DELTA  # 2036-02-07 06:28:16 UTC as a Unix time
_HEAD = struct.Struct("!BBbbIII")  # li/vn/mode, stratum, poll, precision, delay, disp, refid


def to_ntp(t: float) -> tuple[int, int]:
    """Unix time -> (32-bit seconds, 32-bit fraction) of an NTP timestamp (any era)."""
    total = t + NTP_DELTA
    secs = math.floor(total)
    frac = min(int((total - secs) * ERA), ERA - 1)
    return secs % ERA, frac


def from_ntp(secs: int, frac: int, near: float) -> float:
    """An NTP timestamp as Unix time, in the era that puts it nearest ``near``."""
    base = secs + frac / ERA - NTP_DELTA  # era 0
    return base + round((near - base) / ERA) * ERA


class Reply(Record):
    """A server's answer, reduced to what the checks and the verdict need."""

    mode: int
    stratum: int
    leap: int
    offset: float  # server time - our time, seconds
    delay: float  # round trip, seconds
    matches: bool  # the reply echoes our request's transmit timestamp


def request_packet(now: float) -> bytes:
    """A client request (version 4, mode 3) carrying ``now`` and random low bits.

    The fraction's low 16 bits are random (below a 15 us step): the server echoes
    the whole transmit timestamp, so a blind spoofer must guess them too.
    """
    secs, frac = to_ntp(now)
    frac = (frac & ~0xFFFF) | int.from_bytes(os.urandom(2), "big")
    return b"\x23" + bytes(39) + struct.pack("!II", secs, frac)


def parse_reply(data: bytes, sent: bytes, t1: float, t4: float) -> Reply | None:
    """The reply to ``sent`` (sent at ``t1``, received at ``t4``); None if too short."""
    if len(data) < 48:
        return None
    first, stratum, _poll, _prec, _delay, _disp, _refid = _HEAD.unpack_from(data)
    recv_s, recv_f, tx_s, tx_f = struct.unpack_from("!IIII", data, 32)
    t2 = from_ntp(recv_s, recv_f, t1)
    t3 = from_ntp(tx_s, tx_f, t1)
    return Reply(mode=first & 7, stratum=stratum, leap=first >> 6,
                 offset=((t2 - t1) + (t3 - t4)) / 2, delay=(t4 - t1) - (t3 - t2),
                 matches=data[24:32] == sent[40:48] and (tx_s or tx_f) != 0)


def exchange(address: str, port: int, timeout: float) -> Reply:
    """Send one request to ``address`` and wait for its reply (``TimeoutError``)."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        deadline = time.monotonic() + timeout
        t1 = time.time()
        sent = request_packet(t1)
        sock.send(sent)
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(512)
            t4 = time.time()
            reply = parse_reply(data, sent, t1, t4)
            if reply is not None:
                return reply
