"""Serving the validating webhook: kopf's server with our certificates, and who manages the configuration."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from . import certs, metrics, webhook
from .settings import Settings

log = logging.getLogger(__name__)


class WebhookServer(kopf.WebhookServer):
    """kopf's server, answering every malformed review with a plain 400 instead of a 500.

    kopf reads the AdmissionReview with `.get` chains that fail with a 500 (and Python's text) on a body
    of the wrong shape. The port is reachable inside the cluster, so it checks the shape first
    (`webhook.malformed_review`). aiohttp caches the body, so kopf reads it again unchanged.

    With `renew` (the "self" mode) it also keeps its own certificate fresh: every `check_interval`
    seconds it asks `certs.renewal_reason` and writes a new CA and certificate when needed; kopf notices
    the changed files (`file_check_interval`), serves the new certificate and patches the caBundle, which
    carries the previous CA too, so the API server trusts whichever certificate it meets meanwhile.
    """

    def __init__(self, *, renew: Renewal | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.renew = renew

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        task = asyncio.create_task(self.renew.forever()) if self.renew else None
        try:
            async for config in super().__call__(fn):
                yield config
        finally:
            if task is not None:
                task.cancel()

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        try:
            data = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            raise aiohttp.web.HTTPBadRequest(text="the body is not JSON") from None
        problem = webhook.malformed_review(data)
        if problem is not None:
            metrics.review(metrics.MALFORMED)
            raise aiohttp.web.HTTPBadRequest(text=problem)
        try:
            return await kopf.WebhookServer._serve(fn, request)
        except aiohttp.web.HTTPException:
            raise
        except Exception as exc:  # kopf found something else it could not read: still the client's fault
            log.warning("malformed admission review", extra={"error": repr(exc)})
            metrics.review(metrics.MALFORMED)
            raise aiohttp.web.HTTPBadRequest(text="malformed admission review") from None


class Renewal:
    """The "self" mode's certificate upkeep: a new one before the current one expires (certs.py)."""

    def __init__(self, directory: Path, hosts: Sequence[str], validity_days: float, renew_before_days: float):
        self.directory = directory
        self.hosts = list(hosts)
        self.validity = datetime.timedelta(days=validity_days)
        self.renew_before = datetime.timedelta(days=renew_before_days)
        # Often enough to renew well inside the window, rarely enough to cost nothing: at most hourly.
        self.check_interval = max(1.0, min(3600.0, self.renew_before.total_seconds() / 10))

    def files(self) -> tuple[Path, Path, Path]:
        return (self.directory / "ca.crt", self.directory / "tls.crt", self.directory / "tls.key")

    def ensure(self, now: datetime.datetime | None = None) -> str | None:
        """Make a new CA and certificate when needed; returns why (a certs.* reason) or None."""
        now = now or datetime.datetime.now(datetime.UTC)
        ca, crt, _ = self.files()
        current = crt.read_bytes() if crt.exists() else None
        why = certs.renewal_reason(
            current, self.hosts, validity=self.validity, renew_before=self.renew_before, now=now
        )
        if why is not None:
            # A certificate made at startup replaces whatever a previous process left (nothing to keep);
            # a renewal keeps the CA it replaces in the bundle while the server switches over.
            keep = ca.read_bytes() if why != certs.MISSING and ca.exists() else b""
            certs.generate(self.directory, self.hosts, self.validity, keep_ca=keep, now=now)
        return why

    async def forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                why = self.ensure()
            except OSError as exc:  # a full or read-only disk: say so, keep serving, try again
                log.error("webhook certificate renewal failed", extra={"error": repr(exc)})
                continue
            if why is not None:
                log.info("webhook certificate renewed", extra={"why": why})


def configure(settings: kopf.OperatorSettings, cfg: Settings) -> None:
    """Point kopf's admission server at our certificates; in "self" mode kopf also owns the configuration."""
    directory = Path(cfg.webhook_cert_dir)
    host = cfg.webhook_host or "127.0.0.1"
    renew: Renewal | None = None
    if cfg.webhook_mode == "self":
        renew = Renewal(
            directory,
            [host, cfg.webhook_addr],
            cfg.webhook_cert_validity_days,
            cfg.webhook_cert_renew_before_days,
        )
        # Always a fresh pair at startup: the previous process's CA key is gone with it.
        certs.generate(directory, renew.hosts, renew.validity)
        ca, crt, key = renew.files()
        # kopf creates/patches the ValidatingWebhookConfiguration with our CA bundle and its rules.
        settings.admission.managed = cfg.webhook_config_name
    elif cfg.webhook_mode == "certs":
        ca, crt, key = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    else:
        raise ValueError(f"FLASKOPS_WEBHOOK must be none, self or certs, not {cfg.webhook_mode!r}")
    metrics.STATE.cert_file = crt
    client_auth: dict[str, Any] = {}
    if cfg.webhook_client_ca:
        # The TLS handshake itself refuses a caller without a certificate from this CA: an anonymous
        # request never reaches a handler (kopf passes these to ssl.SSLContext).
        client_auth = {"verify_mode": ssl.CERT_REQUIRED, "verify_cafile": cfg.webhook_client_ca}
    settings.admission.server = WebhookServer(
        addr=cfg.webhook_addr,
        port=cfg.webhook_port,
        host=host,
        certfile=crt,
        pkeyfile=key,
        cafile=ca,
        renew=renew,
        # kopf re-reads the files this often (a mounted Secret's renewal, or ours) and serves new ones.
        file_check_interval=renew.check_interval if renew else 60.0,
        **client_auth,
    )
