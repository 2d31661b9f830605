"""Showing things to a person: a new secret (account, grouped secret, URI, QR), devices.

``qrcode`` is imported here, only when a code is drawn, so it stays off
every path that does not show a secret.
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import when
from pam_twofa.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def show_qr(uri: str, mode: str = "auto") -> None:
    """The QR code on stdout: ``utf8`` half blocks, ``ascii``, ``none``, or ``auto``
    (half blocks when stdout can carry them)."""
    if mode == "none":
        return
    from pam_twofa.enroll import qr

    stdout = click.get_text_stream("stdout")
    ascii_only = mode == "ascii" or (mode == "auto" and not qr.can_draw_blocks(stdout))
    click.echo(qr.terminal(uri, ascii_only=ascii_only))


def show_secret(user: str, secret: str, uri: str, *, qr_mode: str = "none",
                png: str | None = None, png_fd: int | None = None) -> None:
    """QR code (``qr_mode``, see ``show_qr``), account, grouped secret and URI;
    ``png``: also write the QR code there (a new file, mode 0600), through ``png_fd``
    when the caller opened it already (``qr.open_png``, before changing state)."""
    show_qr(uri, qr_mode)
    click.echo(f"Account: {user}")
    click.echo(f"Secret:  {grouped(secret)}")
    click.echo(f"URI:     {uri}")
    if png:
        write_png(png, uri, png_fd)
        click.echo(f"QR code written to {png}")


def write_png(path: str, uri: str, fd: int | None = None) -> None:
    """The QR code into ``fd`` (or a new file at ``path``); errors as ``UsageError``."""
    from pam_twofa.enroll import qr

    try:
        qr.write_png_fd(qr.open_png(path) if fd is None else fd, uri)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def print_devices(rows: list[dict[str, Any]]) -> None:
    """The table ``trust list`` and ``twofa-enroll devices`` print."""
    if not rows:
        click.echo("No trusted devices.")
        return
    hosts = any("host" in row for row in rows)  # the fleet's: every host's devices
    click.echo((f"{'HOST':<20} " if hosts else "")
               + f"{'ID':<9} {'SERVICE':<12} {'IP':<16} {'KEY':<51} {'EXPIRES':<24} LAST USED")
    for row in rows:
        expires = when(row["expires"]) + (" (expired)" if row["expired"] else "")
        click.echo((f"{row.get('host') or '-':<20} " if hosts else "")
                   + f"{row['id']!s:<9} {row.get('service') or '-':<12} {row['ip']!s:<16} "
                   f"{row['key'] or '-':<51} {expires:<24} {when(row['last_used'])}")
