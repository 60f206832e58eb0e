"""The save node's plan: which files, which of ComfyUI's chunks and which document, decided before any I/O."""

from __future__ import annotations

from runtime_metadata.nodes import comfyui_chunks, plan_save

TARGET = ("/out/sub", "shot_%batch_num%", 41, "sub")
PROMPT = {"1": {"class_type": "ApiNode", "inputs": {"api_key": "sk-1"}}}
CLEAN_PROMPT = {"1": {"class_type": "ApiNode", "inputs": {"api_key": "[redacted]"}}}
PNGINFO = {"workflow": {"nodes": [{"widgets_values": ["sk-1"]}]}}
CLEAN_PNGINFO = {"workflow": {"nodes": [{"widgets_values": ["[redacted]"]}]}}
CLEAN = (CLEAN_PROMPT, CLEAN_PNGINFO, frozenset({"sk-1"}))


def plan(count=3, requested_format="jpeg", **kw):
    args = {"with_metadata": True, "prompt": PROMPT, "extra_pnginfo": PNGINFO, "keep_api_keys": False, "clean": CLEAN}
    return plan_save(count, requested_format, TARGET, **(args | kw))


def test_each_image_gets_comfyuis_name_the_next_counter_and_the_formats_extension():
    p = plan()
    assert p.fmt == "jpeg"
    assert [f.name for f in p.files] == ["shot_0_00041_.jpg", "shot_1_00042_.jpg", "shot_2_00043_.jpg"]
    assert [f.path for f in p.files] == [f"/out/sub/{f.name}" for f in p.files]
    assert [f.ui for f in p.files] == [{"filename": f.name, "subfolder": "sub", "type": "output"} for f in p.files]
    assert plan(1, "tiff").files[0].name == "shot_0_00041_.png"  # ComfyUI's default for an unknown format


def test_the_images_carry_comfyuis_chunks_without_credentials_unless_asked_to_keep_them():
    p = plan()
    assert (p.prompt, p.extra_pnginfo) == (CLEAN_PROMPT, CLEAN_PNGINFO)
    assert p.document_prompt == CLEAN_PROMPT and p.secrets == {"sk-1"}
    kept = plan(keep_api_keys=True)
    assert (kept.prompt, kept.extra_pnginfo) == (PROMPT, PNGINFO)
    assert kept.document_prompt == CLEAN_PROMPT  # the document never holds one


def test_when_credentials_could_not_be_taken_out_the_images_carry_no_prompt_workflow_or_document():
    p = plan(clean=None)
    assert (p.prompt, p.extra_pnginfo, p.document_prompt, p.secrets) == (None, None, None, frozenset())


def test_with_metadata_off_comfyuis_chunks_pass_as_given_and_no_document_is_built():
    p = plan(with_metadata=False, clean=None)
    assert (p.prompt, p.extra_pnginfo, p.document_prompt) == (PROMPT, PNGINFO, None)


def test_the_workflow_is_left_out_when_asked_and_the_callers_dict_is_untouched():
    assert comfyui_chunks(PNGINFO, embed_workflow=False) == {}
    assert comfyui_chunks(PNGINFO, embed_workflow=True) == PNGINFO
    assert comfyui_chunks(PNGINFO, embed_workflow=True) is not PNGINFO
    assert PNGINFO == {"workflow": {"nodes": [{"widgets_values": ["sk-1"]}]}}
    assert comfyui_chunks(None, embed_workflow=True) is None and comfyui_chunks(["x"], embed_workflow=True) is None
