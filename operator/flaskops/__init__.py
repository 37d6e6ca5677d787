"""flaskops: a Kubernetes operator for Flask + PostgreSQL applications."""
