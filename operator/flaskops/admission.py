"""Serving the validating webhook: kopf's server with our certificates, and who manages the configuration."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from . import certs, webhook
from .settings import Settings

log = logging.getLogger(__name__)


class WebhookServer(kopf.WebhookServer):
    """kopf's server, answering every malformed review with a plain 400 instead of a 500.

    kopf reads the AdmissionReview with `.get` chains that fail with a 500 (and Python's text) on a body
    of the wrong shape. The port is reachable inside the cluster, so it checks the shape first
    (`webhook.malformed_review`). aiohttp caches the body, so kopf reads it again unchanged.
    """

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        try:
            data = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            raise aiohttp.web.HTTPBadRequest(text="the body is not JSON") from None
        problem = webhook.malformed_review(data)
        if problem is not None:
            raise aiohttp.web.HTTPBadRequest(text=problem)
        try:
            return await kopf.WebhookServer._serve(fn, request)
        except aiohttp.web.HTTPException:
            raise
        except Exception as exc:  # kopf found something else it could not read: still the client's fault
            log.warning("malformed admission review", extra={"error": repr(exc)})
            raise aiohttp.web.HTTPBadRequest(text="malformed admission review") from None


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
    settings.admission.server = WebhookServer(
        addr=cfg.webhook_addr,
        port=cfg.webhook_port,
        host=host,
        certfile=crt,
        pkeyfile=key,
        cafile=ca,
    )
