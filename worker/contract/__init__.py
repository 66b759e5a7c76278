"""The wire format: pydantic models of commands, results and events (SPEC §4 to §7)."""
