"""``os2d serve``: an HTTP service (FastAPI + uvicorn) with a persistent product catalog and a page.

See docs/serve.md. :func:`create_app` builds the app; :mod:`os2d.serve.catalog` holds the catalog
protocol (SQLite metadata beside an os2d catalog folder).
"""
from os2d.serve.app import create_app
from os2d.serve.settings import Limits, ServeSettings, build_settings

__all__ = ["Limits", "ServeSettings", "build_settings", "create_app"]
