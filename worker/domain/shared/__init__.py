"""Rules and records every command kind shares: the catalog, identities, matching, the ports."""
