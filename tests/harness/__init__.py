"""Reusable hermetic PAM test environment."""
