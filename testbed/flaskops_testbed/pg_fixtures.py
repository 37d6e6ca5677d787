"""PostgreSQL fixtures (filled in by the reference-app work)."""
