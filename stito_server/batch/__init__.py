"""Batch matching on Dask distributed: manifests (``manifest``), the run (``runner``) and its summary (``summary``).

Dask is imported only when a batch runs (the ``batch`` extra); reading a manifest needs nothing beyond the engine.
"""
