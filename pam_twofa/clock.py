"""Time as an object passed in: ``Clock``, ``FixedClock`` and ``format_time``.

They live in ``login`` (one module fewer on every login); this module names them
for the tools and the tests, and is not loaded by a login.
"""

from __future__ import annotations

from pam_twofa.login import Clock as Clock
from pam_twofa.login import FixedClock as FixedClock
from pam_twofa.login import format_time as format_time

__all__ = ["Clock", "FixedClock", "format_time"]
