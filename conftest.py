"""Root conftest: the shared fixtures live with the harness in testbed/flaskops_testbed."""

pytest_plugins = ["flaskops_testbed.pg_fixtures", "flaskops_testbed.kube_fixtures"]
