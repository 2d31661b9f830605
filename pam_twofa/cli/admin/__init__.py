"""``twofa-admin``: one module per command family, registered in ``main``."""
