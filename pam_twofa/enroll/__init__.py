"""Enrollment helpers a login never needs: QR codes, google-authenticator files."""
