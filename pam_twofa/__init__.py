"""pam-twofa: TOTP two-factor authentication for Linux logins.

Importing the package costs nothing: every login pays for each import, so the
modules are imported one by one where they are needed.
"""

__version__ = "0.1.0"
