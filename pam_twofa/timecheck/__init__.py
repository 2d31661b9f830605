"""Is the server clock right? NTP and time-sync checks for ``twofa-clockcheck``."""
