"""Showing a new secret to a person: account, grouped secret and URI.

The QR code is added by the enrollment issue; keeping it here keeps
``qrcode`` off every path that does not show a secret.
"""

from __future__ import annotations

import click


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def show_secret(user: str, secret: str, uri: str) -> None:
    click.echo(f"Account: {user}")
    click.echo(f"Secret:  {grouped(secret)}")
    click.echo(f"URI:     {uri}")
