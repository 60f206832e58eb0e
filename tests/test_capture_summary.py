"""Secret redaction in error texts: every character of every known secret goes, in any order.

``redact_text`` receives the run's credential values as a frozenset, whose iteration order
changes with ``PYTHONHASHSEED``; what it leaves must not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from runtime_metadata.capture.summary import REDACTED, redact_text, scrub_secrets

#: Few letters, so that generated secrets overlap and contain each other often.
ALPHABET = "ab-1"
secret_text = st.text(ALPHABET, min_size=1, max_size=6)
filler = st.text(ALPHABET + "xy ", max_size=8)


def reference(text: str, secrets: frozenset[str]) -> str:
    """What redaction must give: every occurrence of every secret replaced, overlapping ones as one.

    Occurrences that overlap (one secret inside or across another) make one stretch and one
    marker; occurrences that merely touch keep a marker each, as separate mentions.
    """
    spans = sorted(
        (start, start + len(secret))
        for secret in secrets
        for start in range(len(text) - len(secret) + 1)
        if text.startswith(secret, start)
    )
    out: list[str] = []
    at = 0
    while spans:
        start, end = spans.pop(0)
        while spans and spans[0][0] < end:
            end = max(end, spans.pop(0)[1])
        out += [text[at:start], REDACTED]
        at = end
    out.append(text[at:])
    return "".join(out)


def leaks(redacted: str, secrets: frozenset[str]) -> list[str]:
    """Secrets still readable in what redaction left outside its markers."""
    left = redacted.replace(REDACTED, "\0")
    return sorted(s for s in secrets if s in left)


def test_a_secret_that_is_a_prefix_of_another_leaves_no_tail_under_any_hash_seed():
    # The order a frozenset iterates in depends on the hash seed: replacing the short key
    # first used to leave "[redacted]123XYZ" in the text in some seeds.
    code = (
        "import json; from runtime_metadata.capture.summary import redact_text; print(json.dumps(["
        "redact_text('GET /v1?key=sk-abc123XYZ failed', frozenset({'sk-abc', 'sk-abc123XYZ'})),"
        "redact_text('tok abcdef', frozenset({'abcd', 'cdef'}))]))"
    )
    seen = set()
    for seed in range(8):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.add(tuple(json.loads(out.stdout)))
    assert seen == {("GET /v1?key=[redacted] failed", "tok [redacted]")}


def test_redaction_of_examples():
    assert redact_text("key=sk-abc123XYZ.", frozenset({"sk-abc", "sk-abc123XYZ"})) == "key=[redacted]."
    assert redact_text("sk-abc and sk-abc123XYZ", frozenset({"sk-abc", "sk-abc123XYZ"})) == (
        "[redacted] and [redacted]"
    )
    # Overlapping occurrences are one stretch: neither secret's end survives.
    assert redact_text("abcdef!", frozenset({"abcd", "cdef"})) == "[redacted]!"
    # A secret that spells part of the marker does not eat into markers already written.
    assert redact_text("red sk-1", frozenset({"red", "sk-1"})) == "[redacted] [redacted]"
    assert redact_text("nothing here", frozenset({"sk-1"})) == "nothing here"
    assert redact_text("", frozenset({"sk-1"})) == ""


@given(st.lists(st.tuples(filler, secret_text, st.text(ALPHABET, min_size=1, max_size=6)), min_size=1, max_size=4))
def test_a_secret_and_its_longer_version_never_leak_a_tail(parts):
    secrets = frozenset(s for _, short, tail in parts for s in (short, short + tail))
    text = "".join(before + short + tail for before, short, tail in parts)
    redacted = redact_text(text, secrets)
    assert leaks(redacted, secrets) == []
    assert redacted == reference(text, secrets)


@given(secret_text, secret_text, filler, filler, st.integers(min_value=1, max_value=5))
def test_overlapping_secrets_are_redacted_as_one_stretch(first, second, before, after, overlap):
    overlap = min(overlap, len(first), len(second))
    second = first[-overlap:] + second  # starts with the end of the first
    secrets = frozenset({first, second})
    text = before + first + second[overlap:] + after
    redacted = redact_text(text, secrets)
    assert leaks(redacted, secrets) == []
    assert redacted == reference(text, secrets)


@given(st.frozensets(secret_text, min_size=1, max_size=4), st.lists(st.one_of(filler, secret_text), max_size=8))
def test_secrets_inside_other_text_are_replaced_and_the_rest_kept(secrets, pieces):
    text = "".join(pieces)
    redacted = redact_text(text, secrets)
    assert leaks(redacted, secrets) == []
    assert redacted == reference(text, secrets)
    if not any(s in text for s in secrets):
        assert redacted == text


def test_a_credential_held_in_a_list_literal_is_redacted_not_taken_for_a_link():
    # A two-item list under a credential name used to be read as a link [node, output]: the
    # "source" did not exist, and the literal stayed in the logged prompt and the workflow.
    prompt = {"1": {"class_type": "Login", "inputs": {"credentials": ["bob", "hunter2-secret"], "size": 3}}}
    scrubbed = scrub_secrets(prompt, {"nodes": [{"widgets_values": ["bob", "hunter2-secret", 3]}]})
    assert scrubbed.prompt["1"]["inputs"] == {"credentials": REDACTED, "size": 3}
    assert {"bob", "hunter2-secret"} <= scrubbed.secrets
    assert "hunter2-secret" not in json.dumps(scrubbed.workflow)
    assert prompt["1"]["inputs"]["credentials"] == ["bob", "hunter2-secret"]  # the original is untouched
    # A real link still names the node that feeds the credential.
    linked = {
        "1": {"class_type": "Text", "inputs": {"value": "sk-fed-777"}},
        "2": {"class_type": "ApiNode", "inputs": {"api_key": ["1", 0]}},
    }
    fed = scrub_secrets(linked, None)
    assert fed.secret_nodes == {"1"} and fed.prompt["1"]["inputs"]["value"] == REDACTED
    assert fed.prompt["2"]["inputs"]["api_key"] == ["1", 0]
