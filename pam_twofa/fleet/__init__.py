"""The fleet store: one PostgreSQL database checks codes for many hosts.

Never loaded by a login: a login talks to the host's ``twofa-fleetd`` through
``pam_twofa.fleetclient``. Here: the SQL (``schema.sql``), the admin operations
(``admin``) and the daemon (``daemon``).
"""
