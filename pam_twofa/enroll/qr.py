"""QR codes of otpauth URIs: for a terminal (half blocks or ASCII) and as PNG.

Works with Debian's qrcode 7.4.2 (what pam_python sees) and PyPI's 8.x; the
PNG goes through ``qrcode.image.pure.PyPNGImage`` (pypng), present in both, so
Pillow is never needed. Imported only where a secret is shown: never on the
login path of an enrolled user.

Terminal codes are drawn like ``qrencode -t UTF8``: light modules (and the
quiet zone) in the foreground colour, dark modules as blanks, which reads
right on the usual light-on-dark terminal. Each character cell holds two
module rows (``▀``/``▄``/``█``), so the code stays square and small enough for
an 80x24 window; the ASCII fallback uses two ``#`` per module, one row each,
with a one-module quiet zone so a typical code stays within 80 columns.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

BORDER = 2  # quiet zone in modules; scanners read the block-drawn zone as light
_HALF = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}


def matrix(data: str, border: int = BORDER) -> list[list[bool]]:
    """The module matrix of ``data`` with its quiet zone; True is a dark module."""
    import qrcode

    code = qrcode.QRCode(border=border, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(data)
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


def terminal(data: str, ascii_only: bool = False) -> str:
    """The QR code as lines of text (no trailing newline)."""
    rows = matrix(data, border=1 if ascii_only else BORDER)  # ASCII: 2 columns a module
    light = [[not cell for cell in row] for row in rows]
    if ascii_only:
        return "\n".join("".join("##" if cell else "  " for cell in row) for row in light)
    if len(light) % 2:
        light.append([False] * len(light[0]))  # a blank last half row
    lines = []
    for top, bottom in zip(light[::2], light[1::2], strict=True):
        lines.append("".join(_HALF[pair] for pair in zip(top, bottom, strict=True)))
    return "\n".join(lines)


def can_draw_blocks(stream: IO[str]) -> bool:
    """Whether ``stream`` can carry the half-block characters."""
    encoding = getattr(stream, "encoding", None) or ""
    try:
        "▀▄█".encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def png_bytes(data: str, box_size: int = 8) -> bytes:
    """The QR code as a PNG (black on white, 4-module quiet zone)."""
    import io

    import qrcode
    from qrcode.image.pure import PyPNGImage

    code = qrcode.QRCode(box_size=box_size, border=4,
                         error_correction=qrcode.constants.ERROR_CORRECT_L,
                         image_factory=PyPNGImage)
    code.add_data(data)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()


def open_png(path: str) -> int:
    """A write fd for a new file at ``path`` to hold the QR code (mode 0600: it holds the
    secret). Open it before changing any state, so a refused path changes nothing.

    Only a new file is written (``pathsafety.create_new``): a file someone created
    first stays theirs and unused, a symlink (also a symlinked parent) is refused and
    a FIFO never blocks. Raises ``UsageError``.
    """
    from pam_twofa import pathsafety

    return pathsafety.create_new(path, 0o600, "QR code file")


def write_png_fd(fd: int, data: str) -> None:
    """Write the PNG of ``data`` to ``fd`` (from ``open_png``) and close it."""
    try:
        view = memoryview(png_bytes(data))
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_png(path: str, data: str) -> None:
    """``open_png`` then ``write_png_fd``."""
    write_png_fd(open_png(path), data)
