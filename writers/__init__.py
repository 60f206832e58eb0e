"""Bytes out: image metadata chunks, sidecars, atomic writes.

Entry points: ``save.save_image`` writes an image with ComfyUI's, A1111's and this plugin's
metadata (PNG, JPEG, WebP); ``read.read_metadata`` reads any of them back, following a sidecar
pointer. ``a1111.parameters`` builds the infotext, ``hashes.HashCache`` the AutoV2 model hashes.
Nothing here imports ComfyUI or the rest of the plugin.
"""
