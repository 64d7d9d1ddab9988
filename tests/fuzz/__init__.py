"""Fuzzing of every parser that sees untrusted input (docs/fuzzing.md)."""
