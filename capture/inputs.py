"""Input classification: how each input of each node class is recorded, decided once per name.

An input is kept (summarised), left out (a hidden input whose value is the whole prompt or
workflow, or the executor's own execution list) or redacted (a hidden credential, or a credential-looking name). The decision
depends only on the node class and the input name, so it is made the first time a name is
seen and remembered in the class's plan; the call hook then summarises with
``summary.summarize_values`` without asking again. A (class, input names) pair whose every
name is kept is remembered as clean: the call hook's fast path may then record ComfyUI's
dict as it is when it holds only plain scalars.
"""

from __future__ import annotations

from typing import Any

from .summary import REDACTED, is_secret_name, summarize_values

#: Hidden input types whose values are the whole prompt/workflow, or the executor's own
#: objects (``EXECUTION_LIST``, ComfyUI 0.38): never copied into events.
HIDDEN_SKIP = frozenset({"PROMPT", "EXTRA_PNGINFO", "DYNPROMPT", "EXECUTION_LIST"})
#: Hidden input types that carry credentials.
HIDDEN_SECRET = frozenset({"AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"})

KEEP, SKIP, REDACT = 0, 1, 2
#: Names and keys remembered per table; node packs with generated input names stop being
#: remembered past it and keep working.
PLAN_LIMIT = 4096

#: (node class, input names in ComfyUI's order): the key the call hook looks plans up by.
CallKey = tuple[type, tuple[str, ...]]


class InputPlans:
    """Per node class: each input name's flag, its hidden inputs, and the clean name tuples."""

    __slots__ = ("clean", "hidden", "plans")

    def __init__(self) -> None:
        #: node class -> input name -> KEEP / SKIP / REDACT, filled as names are first seen.
        self.plans: dict[type, dict[str, int]] = {}
        #: (node class, input names) seen with every name KEEP: the fast path's precondition.
        self.clean: set[CallKey] = set()
        #: node class -> (inputs to leave out, inputs to redact) from its hidden inputs.
        self.hidden: dict[type, tuple[frozenset[str], frozenset[str]]] = {}

    def clear(self) -> None:
        """Forget every plan (in place: the call hook holds ``clean`` under its own name)."""
        self.plans.clear()
        self.clean.clear()
        self.hidden.clear()

    def summarize(self, key: CallKey, inputs: dict[str, Any]) -> tuple[dict[str, list[Any]], int]:
        """The summary of ``input_data_all`` and the longest batch list (the call hook's general path).

        Inputs are kept, left out or redacted by the class's plan; a tuple is read as the
        list it stands for: ComfyUI passes ``(None,)`` for an input it has not evaluated (an
        unused lazy input), which is recorded as ``[None]``.
        """
        cls = key[0]
        plan = self.plans.get(cls)
        if plan is None:
            plan = self.plans[cls] = {}
        values: dict[str, list[Any]] = {}
        longest = 1
        all_kept = True
        for name, vals in inputs.items():
            flag = plan.get(name)
            if flag is None:
                flag = classify(self, cls, plan, name)
            if flag:
                all_kept = False
                if flag == REDACT:
                    values[name] = [REDACTED]
                continue
            if type(vals) is tuple:
                vals = list(vals)
            if isinstance(vals, list) and len(vals) > longest:
                longest = len(vals)
            values[name] = summarize_values(vals)
        if all_kept and len(self.clean) < PLAN_LIMIT and not getattr(cls, "INPUT_IS_LIST", False):
            self.clean.add(key)
        return values, longest


def classify(plans: InputPlans, cls: type, plan: dict[str, int], name: str) -> int:
    """How input ``name`` of node class ``cls`` is recorded; noted in ``plan``."""
    skip, secret = hidden_names(plans, cls)
    if name in skip:
        flag = SKIP
    elif name in secret or is_secret_name(name):
        flag = REDACT
    else:
        flag = KEEP
    if len(plan) < PLAN_LIMIT:
        plan[name] = flag
    return flag


def hidden_names(plans: InputPlans, cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(inputs to leave out, inputs to redact) from the node class's hidden inputs; cached."""
    got = plans.hidden.get(cls)
    if got is None:
        skip: set[str] = set()
        secret: set[str] = set()
        try:
            hidden = (cls.INPUT_TYPES() or {}).get("hidden") or {}  # type: ignore[attr-defined]
            for name, kind in hidden.items():
                kind = str(getattr(kind, "value", kind)).upper()
                if kind in HIDDEN_SKIP:
                    skip.add(name)
                elif kind in HIDDEN_SECRET:
                    secret.add(name)
        except Exception:  # V3 nodes or odd packs: fall back to name rules
            pass
        got = plans.hidden[cls] = (frozenset(skip), frozenset(secret))
    return got
