"""Wire fuzzing: hostile bodies against a running worker (SPEC §3, §8)."""
