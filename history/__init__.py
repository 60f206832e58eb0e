"""The run history: a read model of the event logs, in SQLite by default or any SQLAlchemy URL.

``schema`` (tables, migrations), ``store`` (writes and queries), ``rebuild`` (from logs),
``writer`` (the background writer fed at each run's end). Nothing here imports ComfyUI: the
routes module passes in what ComfyUI knows (its user directory, this worker's id).
"""

from __future__ import annotations
