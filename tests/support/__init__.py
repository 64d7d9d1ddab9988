"""Shared test infrastructure: namespaces, the server/client harness, rigs, fakes.

Test modules import helpers from here and never from one another (a guard test,
tests/unit/test_layout_tests.py, keeps it so).
"""
