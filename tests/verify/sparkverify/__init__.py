"""Helpers for the post-deploy verification suite (tests/verify).

Pure parsing and reporting live apart from the SSH plumbing so the unit tier
can test them without a host.
"""
