"""The operator at scale against the Helm-hook way, on one fresh testbed cluster with the real PostgreSQL.

Modules by concern: `cluster` (API clients, setup, FlaskApp bodies, Ready tracking, control-plane CPU),
`audit` (the API server's audit log, counted per window), `operator_phase` (the operator process, its
install/steady/upgrade/soak windows, RSS and reconcile counts), `floors` (PostgreSQL and API server
minimums), `helm_phase` (the Helm-hook way), `pg` (the provisioning SQL the bench runs), `run` (order).
"""
