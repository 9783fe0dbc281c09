"""``/healthz`` (the process serves), ``/readyz`` (the database answers and the manifests were loaded) and
``/metrics`` (Prometheus text format): what load balancers, orchestrators and Prometheus poll. They need no
authentication, except ``/metrics`` when ``api.metrics_auth`` is set."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

router = APIRouter()

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ready, checks = request.app.state.service.ready()
    return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    if request.app.state.settings.api.metrics_auth:  # optionally protected like the API
        from nebctl.api.v1.security import identity

        await identity(request)
    return Response(request.app.state.service.metrics.render(), media_type=PROMETHEUS_TEXT)
