"""The command-line faces: thin click wrappers over the library."""
