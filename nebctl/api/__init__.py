"""nebctl's HTTP face: a FastAPI application served by uvicorn inside ``nebctl serve``.

``app.create_app`` assembles the routers (``health``: ``/healthz``, ``/readyz``, ``/metrics``; the resource API
under ``/api/v1`` and the dashboard add theirs there); ``server.HttpServer`` runs it in a thread of the service's
process. It sits above the controller: it reads the service through the small ``ServiceView`` protocol and
never plans or applies by itself.
"""
