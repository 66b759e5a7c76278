"""Importing profiles (SPEC §4): decode, match, plan the field changes, write."""
