"""QR codes: the PNG and the terminal drawings decode (zbarimg) to the URI, with PyPI's
qrcode 8 (the test interpreter) and Debian's 7.4.2 (/usr/bin/python3, as in pam_python)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import png
import pytest

from pam_twofa.enroll import qr
from pam_twofa.errors import UsageError
from tests.harness.pamenv import REPO_ROOT

URI = ("otpauth://totp/Example%20Corp:alice%40host?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
       "&issuer=Example%20Corp&algorithm=SHA1&digits=6&period=30")
BLOCKS = set("█▀▄ ")
SCALE = 4


def zbar(path: Path) -> str:
    done = subprocess.run(["zbarimg", "--quiet", "--raw", str(path)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _modules_from_text(text: str) -> list[list[bool]]:
    """Light-module rows of the first QR drawing in ``text`` (half blocks or ASCII)."""
    lines = text.splitlines()
    rows: list[list[bool]] = []
    for line in lines:
        half = len(line) >= 21 and set(line) <= BLOCKS and line.strip()
        ascii_ = len(line) >= 42 and set(line) <= {"#", " "} and line.strip()
        if half:
            rows.append([c in "█▀" for c in line])
            rows.append([c in "█▄" for c in line])
        elif ascii_:
            rows.append([line[i] == "#" for i in range(0, len(line), 2)])
        elif rows:
            break
    assert rows, text
    return rows


def decode_terminal(text: str) -> str:
    """Draw the terminal QR code as a terminal would (light on a dark background) and
    decode it with zbarimg."""
    rows = _modules_from_text(text)
    width = max(len(r) for r in rows) + 8
    pixels = []
    dark_row = [0] * (width * SCALE)
    for _ in range(4 * SCALE):
        pixels.append(dark_row)
    for row in rows:
        line = [0] * (4 * SCALE)
        for light in row + [False] * (width - 8 - len(row)):
            line += [255 if light else 0] * SCALE
        line += [0] * (4 * SCALE)
        for _ in range(SCALE):
            pixels.append(line)
    for _ in range(4 * SCALE):
        pixels.append(dark_row)
    with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as f:
        png.Writer(len(pixels[0]), len(pixels), greyscale=True).write(f, pixels)
        name = f.name
    try:
        return zbar(Path(name))
    finally:
        Path(name).unlink()


@pytest.mark.parametrize("ascii_only", [False, True])
def test_terminal_drawing_decodes(ascii_only: bool) -> None:
    text = qr.terminal(URI, ascii_only=ascii_only)
    assert decode_terminal(text) == URI
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    if ascii_only:
        assert set(text) <= {"#", " ", "\n"}
    else:
        assert set(text) <= BLOCKS | {"\n"} and len(lines[0]) <= 80  # fits a terminal


def test_png_with_pypi_qrcode(tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    qr.write_png(str(path), URI)
    assert zbar(path) == URI
    assert path.stat().st_mode & 0o777 == 0o600


def test_png_and_terminal_with_debian_qrcode(tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    script = ("import sys, qrcode\nfrom pam_twofa.enroll import qr\n"
              "assert qrcode.__file__.startswith('/usr/lib/python3/'), qrcode.__file__\n"
              "qr.write_png(sys.argv[1], sys.argv[2])\nprint(qr.terminal(sys.argv[2]))\n")
    done = subprocess.run(["/usr/bin/python3", "-c", script, str(path), URI], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr
    assert zbar(path) == URI
    assert decode_terminal(done.stdout) == URI


def test_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="exists already"):
        qr.write_png(str(link), URI)
    assert target.read_text() == "keep"


def test_can_draw_blocks() -> None:
    class Stream:
        def __init__(self, encoding: str) -> None:
            self.encoding = encoding

    assert qr.can_draw_blocks(Stream("utf-8"))  # type: ignore[arg-type]
    assert not qr.can_draw_blocks(Stream("ascii"))  # type: ignore[arg-type]
    assert not qr.can_draw_blocks(Stream("no-such-codec"))  # type: ignore[arg-type]
