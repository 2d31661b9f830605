"""``twofa-enroll``: one module per command family, registered in ``main``."""
