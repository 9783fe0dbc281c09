"""The web dashboard of ``nebctl serve``: sync status, the pending plan, hosts, VMs, applies and events.

``app.mount`` adds its pages to the service's FastAPI application; ``views`` reads what each page shows,
``charts`` draws the charts and the apply timeline, ``sessions`` signs the session cookie and the CSRF tokens,
and ``identity`` is the seam to the users and access rules it checks. The templates and the vendored assets
(htmx and its SSE extension, noted with their versions and licences in ``static/VENDORED.md``) are package data:
no build step and no CDN. Only the CLI's ``serve`` command imports this package.
"""
