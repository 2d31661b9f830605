"""Host configuration that ``twofa-admin`` edits (PAM service files); never loaded by a login."""
