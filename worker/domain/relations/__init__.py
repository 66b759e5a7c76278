"""Relation commands (SPEC §5): attach, strengthen, edit, detach."""
