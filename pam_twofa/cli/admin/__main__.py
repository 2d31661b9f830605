"""``python3 -m pam_twofa.cli.admin``: the same as ``twofa-admin``."""

from pam_twofa.cli.admin.main import main

main()
