"""Rolling pam-twofa out: who the policy requires (``report``) and what on a host's
set-up is wrong (``doctor``). Only ``twofa-admin`` loads this; a login never does."""
