"""``python3 -m pam_twofa.cli.enroll``: the same as ``twofa-enroll``."""

from pam_twofa.cli.enroll.main import main

main()
