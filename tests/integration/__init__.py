"""Integration tests against real ComfyUI servers (see conftest.py)."""
