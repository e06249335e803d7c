"""Evaluation and training audio from Debian packages: source lists, fetching, clip cutting, manifests."""
