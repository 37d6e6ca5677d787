"""The local harness: a real PostgreSQL and a real Kubernetes control plane on loopback."""
