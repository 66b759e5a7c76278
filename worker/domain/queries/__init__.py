"""Relation queries (SPEC §6): read-only answers about relations."""
