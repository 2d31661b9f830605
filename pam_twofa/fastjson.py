"""JSON for state files through CPython's C accelerator alone.

``import json`` costs ~0.9 ms a login, most of it compiling regular
expressions for its pure-Python fallbacks, which are never used when the C
accelerator ``_json`` is present. This module drives ``_json`` directly, with
the same options ``json`` passes it, and falls back to ``json`` where ``_json``
is missing. The state tests (``tests/test_store_core.py``) read and write through it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}  # noqa: RUF012 (the C scanner clears it after each call)

    @staticmethod
    def parse_constant(name: str) -> float:
        # NaN and Infinity are not JSON: refuse them like any other bad input.
        raise ValueError(f"{name} is not allowed")


_scan: Any = None
_encode: Any = None
try:
    import _json

    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
    _encode = _json.make_encoder(
        None, None, _json.encode_basestring_ascii, None, ": ", ", ", True, False, False  # type: ignore[arg-type]
    )
except (ImportError, AttributeError):  # another interpreter: the public module
    _scan = None


def loads(text: str | bytes) -> Any:
    """Decode a JSON document; ``ValueError`` for anything that is not exactly one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _scan is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError):
        # On a syntax error the C scanner raises json.decoder.JSONDecodeError only if
        # json.decoder is already imported; otherwise it fails with SystemError.
        raise ValueError("not a JSON document") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise ValueError("JSON nested too deeply") from None
    rest = text[end:]
    if rest.strip(" \t\n\r"):
        raise ValueError("extra data after the JSON document")
    return value


def dumps(value: Any) -> str:
    """Encode ``value`` as compact ASCII JSON with sorted keys; no NaN/Infinity."""
    if _scan is None:
        import json

        return json.dumps(value, sort_keys=True, allow_nan=False)
    return "".join(_encode(value, 0))
