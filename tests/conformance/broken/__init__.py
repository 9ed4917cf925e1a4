"""Deliberately broken servers for the suite's tests: the reference behind a fault proxy."""
