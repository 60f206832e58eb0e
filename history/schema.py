"""The history's tables (SQLAlchemy Core) and their versioned migrations.

Tables are prefixed ``rtm_`` so the history can live in a database that holds other things
(a studio's existing PostgreSQL). ``rtm_schema`` holds the schema version; ``migrate`` brings a
database up to ``SCHEMA_VERSION`` one step at a time, under a lock, and refuses a database
that a newer plugin has migrated past what this one knows.

Indexes, chosen for the routes (measured in ``bench/test_bench_history*.py``):

* ``rtm_runs (started_ns)``: the runs page, newest first, and "the last N runs" of the stats;
* ``rtm_runs (worker_id, started_ns)``: the same with a worker filter, and retention per worker;
* ``rtm_runs (status, started_ns)``: the status filter and its count;
* ``rtm_runs (prompt_id)``: one run by its prompt id;
* ``rtm_nodes`` primary key ``(run_id, seq)``: a run's nodes in run order;
* ``rtm_run_classes`` primary key ``(run_id, class_type)``: the stats merge one row per run and
  class type (with a duration histogram) instead of reading every node row; and
  ``(class_type, run_id)``: the class-type filter of the runs page and of the stats.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

from ..errors import RuntimeMetadataError

SCHEMA_VERSION = 3

metadata = MetaData()

schema_table = Table("rtm_schema", metadata, Column("version", Integer, nullable=False))

runs = Table(
    "rtm_runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("worker_id", String, nullable=False),
    Column("prompt_id", String, nullable=False),
    Column("client_id", String),
    Column("started_ns", BigInteger, nullable=False),
    Column("finished_ns", BigInteger),
    Column("status", String(16), nullable=False),
    Column("wall_ns", BigInteger),
    Column("nodes_executed", Integer, nullable=False),
    Column("nodes_cached", Integer, nullable=False),
    Column("nodes_failed", Integer, nullable=False),
    Column("hook_ns", BigInteger, nullable=False),
    Column("hook_calls", Integer, nullable=False),
    Column("comfyui", String, nullable=False),
    Column("plugin", String, nullable=False),
    Column("error_type", String),
    Column("error_message", Text),
    Column("images", Text, nullable=False),  # JSON list
    Column("saves", Text, nullable=False),  # JSON list
    Column("events", Integer, nullable=False),
    Column("log_name", String),
    # JSON {class_type: [longest duration in ns, then the bucket of each timed node, ascending]}:
    # the stats read one row per run (added in version 3).
    Column("buckets", Text),
    Index("ix_rtm_runs_started", "started_ns"),
    Index("ix_rtm_runs_worker_started", "worker_id", "started_ns"),
    Index("ix_rtm_runs_status_started", "status", "started_ns"),
    Index("ix_rtm_runs_prompt", "prompt_id"),
)

nodes = Table(
    "rtm_nodes",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("node_id", String, nullable=False),
    Column("display_id", String),
    Column("parent_id", String),
    Column("class_type", String, nullable=False),
    Column("status", String(16), nullable=False),
    Column("duration_ns", BigInteger),
    Column("start_ns", BigInteger),
    Column("calls", Integer),
    Column("inputs", Text),  # JSON object
    Column("cached_from", String),
    Column("error_type", String),
    Column("error_message", Text),
    PrimaryKeyConstraint("run_id", "seq"),
)

run_classes = Table(
    "rtm_run_classes",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("class_type", String, nullable=False),
    Column("nodes", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    Column("total_ns", BigInteger, nullable=False),
    Column("max_ns", BigInteger, nullable=False),
    Column("buckets", Text, nullable=False),  # JSON: each timed node's duration bucket, ascending
    PrimaryKeyConstraint("run_id", "class_type"),
    Index("ix_rtm_run_classes_class", "class_type", "run_id"),
)


def _v1(conn: Connection) -> None:
    """Version 1: runs, nodes, per-class rows. (Later versions add steps; this one never changes.)"""
    # Today's tables: the later steps only add what a database made by an older version lacks.
    metadata.create_all(conn, tables=[runs, nodes, run_classes])


def _v2(conn: Connection) -> None:
    """Version 2: ``rtm_run_classes.buckets`` holds one bucket per timed node (was [bucket, count] pairs).

    The statistics merge thousands of runs' histograms: concatenating lists and counting them
    (C code) is several times faster than adding pairs up in Python.
    """
    rows = conn.execute(select(run_classes.c.run_id, run_classes.c.class_type, run_classes.c.buckets)).all()
    for run_id, class_type, text_value in rows:
        pairs = json.loads(text_value)
        expanded = [b for i in range(0, len(pairs), 2) for b in [pairs[i]] * pairs[i + 1]]
        conn.execute(
            run_classes.update()
            .where(run_classes.c.run_id == run_id, run_classes.c.class_type == class_type)
            .values(buckets=json.dumps(expanded, separators=(",", ":")))
        )


def _v3(conn: Connection) -> None:
    """Version 3: ``rtm_runs.buckets``, each run's histograms in one row (the stats over 10,000
    runs read 10,000 rows instead of one per run and class type)."""
    if "buckets" not in {column["name"] for column in inspect(conn).get_columns("rtm_runs")}:
        conn.execute(text("ALTER TABLE rtm_runs ADD COLUMN buckets TEXT"))
    per_run: dict[int, dict[str, list[int]]] = {}
    for run_id, class_type, max_ns, text_value in conn.execute(
        select(run_classes.c.run_id, run_classes.c.class_type, run_classes.c.max_ns, run_classes.c.buckets).where(
            run_classes.c.count > 0
        )
    ):
        per_run.setdefault(run_id, {})[class_type] = [max_ns, *json.loads(text_value)]
    for run_id, hist in per_run.items():
        value = json.dumps(hist, separators=(",", ":"), sort_keys=True)
        conn.execute(runs.update().where(runs.c.id == run_id).values(buckets=value))


#: (version reached, step) in order; a step runs inside the migration's transaction.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3)]


class SchemaTooNew(RuntimeMetadataError):
    """The database was migrated by a newer plugin than this one."""


#: Any constant: the PostgreSQL advisory lock that serialises workers migrating at once.
_PG_LOCK = 0x72746D5F68697374  # "rtm_hist"


def current_version(conn: Connection) -> int:
    """The schema version of the database behind ``conn`` (0: no history tables yet)."""
    if not inspect(conn).has_table(schema_table.name):
        return 0
    version = conn.execute(select(schema_table.c.version)).scalar()
    return int(version or 0)


def migrate(conn: Connection) -> tuple[int, int]:
    """Bring the schema to ``SCHEMA_VERSION`` inside ``conn``'s transaction; (from, to) versions."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the history database is at schema version {found}, newer than this plugin's "
            f"{SCHEMA_VERSION}: update the plugin (nothing was written)"
        )
    if found == SCHEMA_VERSION:
        return found, found
    if found == 0:
        metadata.create_all(conn, tables=[schema_table])
    for version, step in MIGRATIONS:
        if version > found:
            step(conn)
    if found == 0:
        conn.execute(schema_table.insert(), {"version": SCHEMA_VERSION})
    else:
        conn.execute(schema_table.update().values(version=SCHEMA_VERSION))
    return found, SCHEMA_VERSION
