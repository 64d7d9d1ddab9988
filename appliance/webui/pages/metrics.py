"""``GET /metrics``: Prometheus text format, bearer token when one is configured."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from ..metrics import authorized, read_token, render
from .common import ctx

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    c = ctx()
    if not authorized(request.headers.get("Authorization"), read_token(c.metrics_token_file)):
        log.warning("metrics scrape from %s refused: bad or missing token",
                    request.remote_addr)
        return Response("unauthorized\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="ocgate-metrics"'})
    return Response(render(c.vpn.snapshot, c.health), mimetype=CONTENT_TYPE_LATEST)
