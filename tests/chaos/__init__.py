"""The chaos suite: a seeded stream of mixed commands with copies, run through a real worker
while it is killed, the broker restarted and the database cut off, and checked against a pure
reference model of what the stream must leave behind (SPEC §9)."""
