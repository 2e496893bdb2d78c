"""Fixtures of the tests against the demo lab (the helpers are in demolab.py)."""

from demolab import demo_lab  # noqa: F401  the fixture, shared by this directory's tests
