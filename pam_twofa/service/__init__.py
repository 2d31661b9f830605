"""The root enrollment service (``twofa-enroll-service``): protocol, server, operations."""
