"""Product catalogs: class features computed once and stored with the model's identity.

See :mod:`os2d.catalog.store` for the folder layout and :class:`Catalog` for the API.
"""
from os2d.catalog.catalog import Catalog, CatalogMismatchError, ImageSource, catalog_summary

__all__ = ["Catalog", "CatalogMismatchError", "ImageSource", "catalog_summary"]
