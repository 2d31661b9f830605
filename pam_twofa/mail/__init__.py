"""Mail: SMTP sending, notices and the security-email address; never loaded by a login
that sends no mail."""
