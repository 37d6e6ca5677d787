"""Everything the operator does with PostgreSQL, one module per concern.

- `naming`: which database and role an app uses (`identity_for`), identifier limits, environment stamps.
- `url`: the universal connection URL and the `<app>-db` Secret's keys; parsing a user's URL.
- `errors`: what provisioning raises, each with the condition reason it becomes.
- `pool`: the admin's identity (`AdminConnection`), its login, and the pooled admin connections per server.
- `server`: admin sessions, provisioning, checks, drops. `pool` and `server` are the only modules that
  import psycopg.

Pure decisions about who owns a role or database stay in `flaskops.ownership`; this package reads the
facts they judge and carries out the plan. Importing the package imports no driver: only `pool` and `server` do.
"""
