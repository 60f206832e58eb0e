"""Timing statistics across runs: per class type, wall time, capture overhead. Pure."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

D = TypeVar("D", int, float)


def class_timing(
    durations: Mapping[str, Sequence[D]], to_ms: Callable[[D], float], mean: Callable[[Sequence[D]], D]
) -> dict[str, dict[str, Any]]:
    """Per class type, sorted: calls, total, mean and longest duration in ms.

    The one shape of ``by_class`` in a runtime document (durations in ns) and in ``stats``
    (durations in ms, from documents); ``to_ms`` and ``mean`` keep each one's own rounding.
    """
    return {
        ct: {"calls": len(ds), "total_ms": to_ms(sum(ds)), "mean_ms": to_ms(mean(ds)), "max_ms": to_ms(max(ds))}
        for ct, ds in sorted(durations.items())
    }


def _ms(value: float) -> float:
    return round(value, 3)


def _float_mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def timing_stats(documents: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate the ``timing`` and ``nodes`` of runtime documents (one per run)."""
    runs = 0
    executed = cached = 0
    walls: list[float] = []
    hook_calls = 0
    hook_total = hook_max = 0.0
    by_class: dict[str, list[float]] = {}
    for doc in documents:
        runs += 1
        timing = doc.get("timing") or {}
        # Documents of schema 1 named the counts executed_nodes / cached_nodes.
        executed += int(timing.get("nodes_executed", timing.get("executed_nodes")) or 0)
        cached += int(timing.get("nodes_cached", timing.get("cached_nodes")) or 0)
        if "wall_ms" in timing:
            walls.append(float(timing["wall_ms"]))
        hooks = timing.get("hooks") or {}
        hook_calls += int(hooks.get("calls") or 0)
        hook_total += float(hooks.get("total_ms") or 0.0)
        hook_max = max(hook_max, float(hooks.get("max_ms") or 0.0))
        for node in doc.get("nodes") or ():
            if "duration_ms" in node:
                by_class.setdefault(str(node.get("class_type")), []).append(float(node["duration_ms"]))
    return {
        "runs": runs,
        "nodes_executed": executed,
        "nodes_cached": cached,
        "wall_ms": {"median": round(statistics.median(walls), 3), "max": round(max(walls), 3)} if walls else None,
        "hooks": {
            "calls": hook_calls,
            "total_ms": round(hook_total, 3),
            "max_ms": round(hook_max, 3),
            "share": round(hook_total / sum(walls), 4) if walls and sum(walls) > 0 else 0.0,
        },
        "by_class": class_timing(by_class, _ms, _float_mean),
    }
