"""Benchmarks on held-out real audio: scoring, zero-shot style classification and style retrieval."""
