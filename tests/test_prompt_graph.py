"""The prompt graph helpers: links as ComfyUI writes them, any shape read without raising."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runtime_metadata.prompt_graph import ancestors, class_type, inputs_of, is_link, read_node, sources


def test_a_link_is_a_node_id_and_an_output_index():
    assert is_link(["3", 0]) and is_link([3, 1])
    assert not is_link(["3", True])  # a boolean is no output index
    assert not is_link(["3", 0.5]) and not is_link(["a", "b"]) and not is_link(["3", 0, 1])
    assert not is_link(("3", 0)) and not is_link([None, 0]) and not is_link("3")


def test_odd_shapes_read_as_no_node_never_as_an_error():
    prompt = {"1": {"class_type": "A", "inputs": {"x": ["2", 0]}}, "2": ["not", "a", "node"], "3": {"inputs": []}}
    assert class_type(prompt, "1") == "A" and class_type(prompt, "2") == "?" and class_type(prompt, "9") == "?"
    assert class_type(prompt, "3") == "?" and class_type(prompt, "9", "none") == "none"
    assert inputs_of(prompt, "1") == {"x": ["2", 0]} and inputs_of(prompt, "2") == {} and inputs_of(prompt, "3") == {}
    assert read_node(prompt, "1") == ("A", {"x": ["2", 0]}) and read_node(prompt, "2") is None
    assert read_node(prompt, "3") == ("?", {})
    assert list(sources({"a": ["1", 0], "b": 5, "c": [2, 1]})) == ["1", "2"]


def test_ancestors_follow_links_through_diamonds_and_cycles():
    diamond = {
        "1": {"class_type": "A", "inputs": {}},
        "2": {"class_type": "B", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "B", "inputs": {"x": ["1", 0]}},
        "4": {"class_type": "C", "inputs": {"a": ["2", 0], "b": ["3", 0], "n": 4}},
        "5": {"class_type": "D", "inputs": {"x": ["4", 0]}},
    }
    assert ancestors(diamond, "4") == {"1", "2", "3"} and ancestors(diamond, "1") == set()
    cycle = {"1": {"inputs": {"x": ["2", 0]}}, "2": {"inputs": {"x": ["1", 0]}}}
    assert ancestors(cycle, "1") == {"1", "2"}
    assert ancestors({"1": {"inputs": {"x": ["missing", 0]}}}, "1") == {"missing"}


@given(st.dictionaries(st.sampled_from("12345"), st.lists(st.sampled_from("12345"), max_size=3), max_size=5))
def test_ancestors_are_every_node_a_path_of_links_leads_from(edges):
    prompt = {
        nid: {"class_type": "N", "inputs": {f"i{k}": [src, 0] for k, src in enumerate(srcs)}}
        for nid, srcs in edges.items()
    }
    for start in "12345":
        reach, frontier = set(), set(edges.get(start, []))
        while frontier:  # the transitive closure, breadth first
            reach |= frontier
            frontier = {s for nid in frontier for s in edges.get(nid, [])} - reach
        assert ancestors(prompt, start) == reach
