"""Everything the operator does with PostgreSQL, one module per concern.

- `naming`: which database and role an app uses (`identity_for`), identifier limits, environment stamps.
- `url`: the universal connection URL and the `<app>-db` Secret's keys; parsing a user's URL.
- `errors`: what provisioning raises, each with the condition reason it becomes.
- `server`: the only module that imports psycopg: admin sessions, provisioning, checks, drops.

Pure decisions about who owns a role or database stay in `flaskops.ownership`; this package reads the
facts they judge and carries out the plan. Importing the package imports no driver: only `server` does.
"""
