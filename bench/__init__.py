"""`make bench`: pam-twofa against google-authenticator, pam_oath and a bare pam_python module."""
