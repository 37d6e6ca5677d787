"""Serving the validating webhook: kopf's server with our certificates, and who manages the configuration."""

from __future__ import annotations

from pathlib import Path

import kopf

from . import certs
from .settings import Settings


def configure(settings: kopf.OperatorSettings, cfg: Settings) -> None:
    """Point kopf's admission server at our certificates; in "self" mode kopf also owns the configuration."""
    directory = Path(cfg.webhook_cert_dir)
    host = cfg.webhook_host or "127.0.0.1"
    if cfg.webhook_mode == "self":
        ca, crt, key = certs.generate(directory, [host, cfg.webhook_addr])
        # kopf creates/patches the ValidatingWebhookConfiguration with our CA bundle and its rules.
        settings.admission.managed = cfg.webhook_config_name
    elif cfg.webhook_mode == "certs":
        ca, crt, key = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    else:
        raise ValueError(f"FLASKOPS_WEBHOOK must be none, self or certs, not {cfg.webhook_mode!r}")
    settings.admission.server = kopf.WebhookServer(
        addr=cfg.webhook_addr,
        port=cfg.webhook_port,
        host=host,
        certfile=crt,
        pkeyfile=key,
        cafile=ca,
    )
