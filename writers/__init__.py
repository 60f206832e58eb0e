"""Bytes out: image metadata chunks, sidecars, atomic writes."""
