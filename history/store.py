"""The history database: connect, migrate, write runs idempotently, prune, and answer queries.

Any SQLAlchemy URL; tested on SQLite (the default, in WAL mode) and PostgreSQL. Writes are
idempotent by run id (a digest of worker, prompt id and start, see ``projections.history``):
a run already there is left alone, unless the new rows were folded from more events (a log
that was read while the run was still going, then again complete), which replace it. So
replaying any logs any number of times, live or by backfill, loses no run and adds none twice,
and two workers that ran the same prompt id have two runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, create_engine, delete, event, exists, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from ..config import hide_password
from ..projections.history import RunRows, bucket_value, iso
from .schema import migrate, nodes, run_classes, runs

log = logging.getLogger("runtime_metadata")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.decode

#: Rows per page at most (a page is for eyes; export goes through the logs).
MAX_PAGE = 500
#: Runs the statistics may look back over at most (each run is one row per class type).
MAX_STATS_RUNS = 100_000
#: Seconds a connection attempt may take: a database that is down fails fast, never hangs.
CONNECT_TIMEOUT_S = 5
#: How long SQLite waits for another writer's lock before it gives up.
SQLITE_BUSY_S = 30


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def engine_for(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode (its folder created), PostgreSQL through psycopg."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_S, "check_same_thread": False}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL keeps the database consistent at this level
            cursor.close()

        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # the driver of the extra
        args = {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_driver_name() in ("psycopg", "psycopg2") else {}
        return create_engine(parsed, connect_args=args, pool_pre_ping=True, pool_size=2, max_overflow=4)
    return create_engine(parsed, pool_pre_ping=True)


class HistoryStore:
    """The history behind one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self.backend = self.engine.dialect.name

    @property
    def shown_url(self) -> str:
        """The URL with its password hidden."""
        return hide_password(self.url) or ""

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade the tables; (from, to) schema versions."""
        with self.engine.begin() as conn:
            return migrate(conn)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads."""
        with self.engine.connect() as conn:
            yield conn

    # ----------------------------------------------------------------- writes

    def write(self, batch: Sequence[RunRows]) -> int:
        """Write runs not yet there (or folded from more events than the stored ones); how many."""
        if not batch:
            return 0
        best: dict[int, RunRows] = {}
        for rows in batch:  # the same run twice in a batch: the longer log wins
            got = best.get(rows.run.run_id)
            if got is None or got.run.events < rows.run.events:
                best[rows.run.run_id] = rows
        try:
            return self._write(best)
        except IntegrityError:
            # Another process wrote one of these runs between our check and our insert.
            return self._write(best)

    def _write(self, best: dict[int, RunRows]) -> int:
        with self.engine.begin() as conn:
            stored = dict(conn.execute(select(runs.c.id, runs.c.events).where(runs.c.id.in_(list(best)))).all())
            chosen = [r for rid, r in best.items() if rid not in stored or stored[rid] < r.run.events]
            if not chosen:
                return 0
            replaced = [r.run.run_id for r in chosen if r.run.run_id in stored]
            if replaced:
                for table, column in ((nodes, nodes.c.run_id), (run_classes, run_classes.c.run_id), (runs, runs.c.id)):
                    conn.execute(delete(table).where(column.in_(replaced)))
            conn.execute(runs.insert(), [_run_values(r) for r in chosen])
            node_values = [_node_tuple(r.run.run_id, n) for r in chosen for n in r.nodes]
            if node_values:
                self._insert_many(conn, nodes, node_values)
            class_values = [_class_tuple(r.run.run_id, c) for r in chosen for c in r.classes]
            if class_values:
                self._insert_many(conn, run_classes, class_values)
            return len(chosen)

    def _insert_many(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows given as tuples in the table's column order, in one driver executemany.

        Two hundred node rows per run: SQLAlchemy's per-row parameter processing cost more than
        the database's own work, so the statement (compiled from the Core table) goes to the
        driver as is, with tuples, where the driver's parameter style allows it.
        """
        if self.backend == "postgresql" and self.engine.dialect.driver == "psycopg":
            # COPY: one stream for all the rows, several times faster than INSERTs in a pipeline.
            columns = ", ".join(c.name for c in table.columns)
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marker = _MARKERS.get(self.engine.dialect.paramstyle)
        if marker is None:
            names = [c.name for c in table.columns]
            conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])
            return
        sql = _INSERTS.get((table.name, marker))
        if sql is None:
            columns = ", ".join(c.name for c in table.columns)
            sql = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join([marker] * len(table.columns))})"
            _INSERTS[(table.name, marker)] = sql
        conn.exec_driver_sql(sql, rows)

    def prune(self, worker_id: str, keep: int) -> int:
        """Drop the worker's oldest runs beyond ``keep`` (0 keeps all); how many went."""
        if keep <= 0:
            return 0
        with self.engine.begin() as conn:
            doomed = [
                row[0]
                for row in conn.execute(
                    select(runs.c.id)
                    .where(runs.c.worker_id == worker_id)
                    .order_by(runs.c.started_ns.desc(), runs.c.id.desc())
                    .offset(keep)
                )
            ]
            for start in range(0, len(doomed), 500):  # bounded IN lists
                part = doomed[start : start + 500]
                for table, column in ((nodes, nodes.c.run_id), (run_classes, run_classes.c.run_id), (runs, runs.c.id)):
                    conn.execute(delete(table).where(column.in_(part)))
            return len(doomed)

    def count(self, worker_id: str | None = None) -> int:
        """Runs in the history (of one worker)."""
        query = select(func.count()).select_from(runs)
        if worker_id is not None:
            query = query.where(runs.c.worker_id == worker_id)
        with self.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def stored_logs(self, worker_id: str | None = None) -> dict[str, dict[str, str]]:
        """Log file name -> {worker id: run status} for the runs that came from a kept log."""
        query = select(runs.c.log_name, runs.c.worker_id, runs.c.status).where(runs.c.log_name.is_not(None))
        if worker_id is not None:
            query = query.where(runs.c.worker_id == worker_id)
        out: dict[str, dict[str, str]] = {}
        with self.connect() as conn:
            for name, worker, status in conn.execute(query):
                out.setdefault(name, {})[worker] = status
        return out

    # ----------------------------------------------------------------- queries

    def _filters(
        self, status: str | None, class_type: str | None, worker: str | None, prompt_id: str | None = None
    ) -> list[Any]:
        where: list[Any] = []
        if status is not None:
            where.append(runs.c.status == status)
        if worker is not None:
            where.append(runs.c.worker_id == worker)
        if prompt_id is not None:
            where.append(runs.c.prompt_id == prompt_id)
        if class_type is not None:
            where.append(exists().where(run_classes.c.run_id == runs.c.id, run_classes.c.class_type == class_type))
        return where

    def runs_page(
        self,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        class_type: str | None = None,
        worker: str | None = None,
    ) -> dict[str, Any]:
        """A page of runs, newest first, with the number of runs the filters match."""
        limit = max(0, min(limit, MAX_PAGE))
        where = self._filters(status, class_type, worker)
        page = (
            select(*_RUN_COLUMNS)
            .where(*where)
            .order_by(runs.c.started_ns.desc(), runs.c.id.desc())
            .limit(limit)
            .offset(max(0, offset))
        )
        with self.connect() as conn:
            rows = conn.execute(page).all()
            total = conn.execute(select(func.count()).select_from(runs).where(*where)).scalar()
        return {"runs": [_run_json(r) for r in rows], "total": int(total or 0), "limit": limit, "offset": offset}

    def run(self, prompt_id: str, worker: str | None = None, run_id: int | None = None) -> dict[str, Any] | None:
        """One run with its nodes and saves (the newest, when several runs had this prompt id)."""
        query = select(*_RUN_COLUMNS, runs.c.saves, runs.c.log_name).where(
            *self._filters(None, None, worker, prompt_id)
        )
        if run_id is not None:
            query = query.where(runs.c.id == run_id)
        query = query.order_by(runs.c.started_ns.desc(), runs.c.id.desc()).limit(1)
        with self.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            node_rows = conn.execute(select(*_NODE_COLUMNS).where(nodes.c.run_id == row.id).order_by(nodes.c.seq)).all()
            others = conn.execute(
                select(func.count()).select_from(runs).where(*self._filters(None, None, worker, prompt_id))
            ).scalar()
        doc = _run_json(row)
        doc["nodes"] = [_node_json(n) for n in node_rows]
        doc["saves"] = _json_decode(row.saves)
        doc["log_name"] = row.log_name
        doc["runs_with_this_prompt_id"] = int(others or 0)
        return doc

    def stats(self, last: int = 1000, class_type: str | None = None, worker: str | None = None) -> dict[str, Any]:
        """Per class type over the last ``last`` runs: count, p50, p95 and max of node durations.

        Percentiles come from the runs' duration histograms (``projections.history.bucket``):
        within 1.1% of the exact value; count and max are exact.
        """
        last = max(1, min(last, MAX_STATS_RUNS))
        recent = select(runs.c.buckets).order_by(runs.c.started_ns.desc(), runs.c.id.desc()).limit(last)
        if worker is not None:
            recent = recent.where(runs.c.worker_id == worker)
        with self.connect() as conn:
            rows = conn.execute(recent).all()
        merged: dict[str, list[int]] = {}
        maxima: dict[str, int] = {}
        for (text_value,) in rows:
            if not text_value:
                continue
            for ct, values in _json_decode(text_value).items():
                if class_type is not None and ct != class_type:
                    continue
                got = merged.get(ct)
                if got is None:
                    merged[ct] = values[1:]
                    maxima[ct] = values[0]
                else:
                    got.extend(values[1:])
                    if values[0] > maxima[ct]:
                        maxima[ct] = values[0]
        classes = []
        for ct in sorted(merged):
            all_buckets = merged[ct]
            max_ns = maxima.get(ct, 0)
            hist = Counter(all_buckets)  # counted in C: millions of nodes in tens of ms
            count = len(all_buckets)
            classes.append(
                {
                    "class_type": ct,
                    "count": count,
                    "p50_ms": _percentile(hist, count, 0.50, max_ns),
                    "p95_ms": _percentile(hist, count, 0.95, max_ns),
                    "max_ms": _ms(max_ns),
                }
            )
        return {"classes": classes, "runs": len(rows)}

    def workers(self) -> list[str]:
        """Every worker with runs in the history."""
        with self.connect() as conn:
            return sorted(r[0] for r in conn.execute(select(runs.c.worker_id).distinct()))


def _percentile(hist: Counter[int] | dict[int, int], count: int, p: float, max_ns: int) -> float | None:
    """Nearest-rank percentile from a histogram: the middle of the bucket holding that rank."""
    if count <= 0:
        return None
    rank = max(1, math.ceil(p * count))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return _ms(min(round(bucket_value(b)), max_ns))
    return _ms(max_ns)


_RUN_COLUMNS = (
    runs.c.id,
    runs.c.prompt_id,
    runs.c.worker_id,
    runs.c.client_id,
    runs.c.started_ns,
    runs.c.finished_ns,
    runs.c.status,
    runs.c.wall_ns,
    runs.c.nodes_executed,
    runs.c.nodes_cached,
    runs.c.nodes_failed,
    runs.c.hook_ns,
    runs.c.hook_calls,
    runs.c.comfyui,
    runs.c.plugin,
    runs.c.error_type,
    runs.c.error_message,
    runs.c.images,
)
_NODE_COLUMNS = (
    nodes.c.node_id,
    nodes.c.display_id,
    nodes.c.parent_id,
    nodes.c.class_type,
    nodes.c.status,
    nodes.c.duration_ns,
    nodes.c.start_ns,
    nodes.c.calls,
    nodes.c.inputs,
    nodes.c.cached_from,
    nodes.c.error_type,
    nodes.c.error_message,
)


def _run_json(row: Any) -> dict[str, Any]:
    return {
        "run_id": str(row.id),  # 63 bits: more than a JavaScript number holds exactly
        "prompt_id": row.prompt_id,
        "worker_id": row.worker_id,
        "client_id": row.client_id,
        "started_at": iso(row.started_ns),
        "finished_at": iso(row.finished_ns),
        "status": row.status,
        "wall_ms": _ms(row.wall_ns),
        "nodes_executed": row.nodes_executed,
        "nodes_cached": row.nodes_cached,
        "nodes_failed": row.nodes_failed,
        "hook_ms": _ms(row.hook_ns),
        "hook_calls": row.hook_calls,
        "comfyui": row.comfyui,
        "plugin": row.plugin,
        "error": {"type": row.error_type, "message": row.error_message}
        if row.error_type or row.error_message
        else None,
        "images": _json_decode(row.images),
    }


def _node_json(row: Any) -> dict[str, Any]:
    return {
        "node_id": row.node_id,
        "display_id": row.display_id,
        "parent_id": row.parent_id,
        "class_type": row.class_type,
        "status": row.status,
        "duration_ms": _ms(row.duration_ns),
        "calls": row.calls,
        "start_ms": _ms(row.start_ns),
        "inputs": _json_decode(row.inputs) if row.inputs is not None else None,
        "cached_from": row.cached_from,
        "error": {"type": row.error_type, "message": row.error_message}
        if row.error_type or row.error_message
        else None,
    }


def _run_values(rows: RunRows) -> dict[str, Any]:
    r = rows.run
    return {
        "id": r.run_id,
        "worker_id": r.worker_id,
        "prompt_id": r.prompt_id,
        "client_id": r.client_id,
        "started_ns": r.started_ns,
        "finished_ns": r.finished_ns,
        "status": r.status,
        "wall_ns": r.wall_ns,
        "nodes_executed": r.nodes_executed,
        "nodes_cached": r.nodes_cached,
        "nodes_failed": r.nodes_failed,
        "hook_ns": r.hook_ns,
        "hook_calls": r.hook_calls,
        "comfyui": r.comfyui,
        "plugin": r.plugin,
        "error_type": r.error_type,
        "error_message": r.error_message,
        "images": _json_encode(r.images).decode(),
        "saves": _json_encode(r.saves).decode(),
        "events": r.events,
        "log_name": r.log_name,
        # Per class type with timed nodes: [max_ns, bucket, bucket, ...] (see schema: rtm_runs.buckets).
        "buckets": _json_encode({c.class_type: [c.max_ns, *c.buckets] for c in rows.classes if c.count}).decode(),
    }


#: Positional parameter marker by DB-API paramstyle (psycopg takes %s beside %(name)s).
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_INSERTS: dict[tuple[str, str], str] = {}


def _node_tuple(run_id: int, n: Any) -> tuple[Any, ...]:
    """A node row in ``nodes``' column order."""
    inputs = n.inputs
    return (
        run_id,
        n.seq,
        n.node_id,
        n.display_id,
        n.parent_id,
        n.class_type,
        n.status,
        n.duration_ns,
        n.start_ns,
        n.calls,
        _json_encode(inputs).decode() if inputs is not None else None,
        n.cached_from,
        n.error_type,
        n.error_message,
    )


def _class_tuple(run_id: int, c: Any) -> tuple[Any, ...]:
    """A per-class row in ``run_classes``' column order."""
    return (run_id, c.class_type, c.nodes, c.count, c.total_ns, c.max_ns, _json_encode(c.buckets).decode())


def describe_error(exc: BaseException, url: str) -> str:
    """One line about a database error, with the URL's password (if any) taken out of it."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else ""
    password = None
    with contextlib.suppress(Exception):
        password = make_url(url).password
    if password:
        first = first.replace(str(password), "***")
    return f"{type(orig).__name__}: {first[:300]}" if first else type(orig).__name__


def default_sqlite_url(folder: str | os.PathLike[str]) -> str:
    """The default history: ``history.sqlite`` in ``folder``."""
    return "sqlite:///" + str(Path(folder).expanduser().resolve() / "history.sqlite")
