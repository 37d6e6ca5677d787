"""Kubernetes fixtures (filled in by the testbed work)."""
