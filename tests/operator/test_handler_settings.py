"""kopf settings the operator relies on, checked without a cluster."""

import kopf

from flaskops import handlers


def test_a_failed_reconcile_is_retried_within_seconds_not_kopfs_minute():
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    assert settings.execution.default_backoff == handlers.RETRY_SECONDS <= 10
