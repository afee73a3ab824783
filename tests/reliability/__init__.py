"""Reliability and security tests: invariants under load, faults and bad input."""
