"""Test executors that follow ComfyUI's real signatures and call sequences exactly.

They exist only for what cannot run here in-process: fault injection and chaining tests need
to call the wrap points thousands of times without a server. The real ComfyUI is exercised
by ``tests/integration``.
"""
