"""Backends read the checked graph IR, never parse trees."""
