"""Integration tests: real frameworks and real HTTP clients against aiogate over
loopback sockets."""
