"""Generators saved in Keras's own layers, and back again for export.

Training builds each pixel shuffle as one `DepthToSpace` layer (one TensorFlow op, which tf2onnx maps
to one ONNX `DepthToSpace`: the form onnxruntime's int8 quantizer and NCHWc path take) whose conv
kernel starts as `ICNR`. Both classes are ours, so a file that names them loads only after
`import training.models`. `to_portable` rewrites a generator's config so that each DepthToSpace becomes
Reshape -> Permute -> Reshape (the same values, in TensorFlow's and ONNX's DCR order) and each ICNR
the GlorotUniform it starts from (it only initialises): what the trainer saves loads with
`keras.models.load_model` alone. The rewrite is of the saved file's JSON (`rewrite_saved_file`), so it
builds no model and makes no variable: safe on one worker of a multi-worker run. Layers with weights
keep their names, so the saved weights stay valid; `with_depth_to_space` undoes it for export.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from pathlib import Path

import keras

SPLIT, INTERLEAVE = "_split", "_interleave"  # name suffixes of the two layers a DepthToSpace gains
INTERLEAVE_DIMS = [1, 3, 2, 4, 5]  # [h, w, i, j, c] -> [h, i, w, j, c]
DEPTH_TO_SPACE = {"module": "training.networks.layers", "class_name": "DepthToSpace",
                  "registered_name": "gan>DepthToSpace"}
GLOROT_UNIFORM = {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None},
                  "registered_name": None}


def to_portable(config: dict) -> dict:
    """A functional model's config with each DepthToSpace as Reshape -> Permute -> Reshape and each
    ICNR as GlorotUniform: plain JSON, so it runs anywhere (no model is built, no variable made)."""
    config = copy.deepcopy(config)
    layers = []
    for entry in config["layers"]:
        if entry["class_name"] == "DepthToSpace":
            layers += _as_reshapes(entry)
        else:
            _plain_initializers(entry)
            layers.append(entry)
    config["layers"] = layers
    return config


def rewrite_saved_file(path: str | Path) -> None:
    """Make a `.keras` file that `model.save` wrote portable, in place: its config.json is rewritten
    (`to_portable`) and its weights are kept as they are, keyed by the layer names that stay."""
    path = Path(path)
    rewritten = path.with_name(path.name + ".portable")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                saved = json.loads(data)
                saved["config"] = to_portable(saved["config"])
                data = json.dumps(saved).encode()
            target.writestr(item, data)
    os.replace(rewritten, path)


def with_depth_to_space(model: keras.Model) -> keras.Model:
    """`to_portable` undone on a loaded model: each Reshape -> Permute -> Reshape it wrote is one
    DepthToSpace again (for export). A model without them comes back as it is."""
    config = copy.deepcopy(model.get_config())
    by_name = {entry["name"]: entry for entry in config["layers"]}
    merged: dict[str, dict] = {}  # the last Reshape's name -> the DepthToSpace entry replacing all three
    dropped: set[str] = set()
    for entry in config["layers"]:
        if entry["class_name"] != "Permute" or list(entry["config"]["dims"]) != INTERLEAVE_DIMS:
            continue
        (split_name,) = _sources(entry)
        split = by_name[split_name]
        last = next(e for e in config["layers"] if entry["name"] in _sources(e))
        block = split["config"]["target_shape"][2]
        merged[last["name"]] = {**DEPTH_TO_SPACE, "name": last["name"], "inbound_nodes": split["inbound_nodes"],
                                "config": {"name": last["name"], "trainable": True, "dtype": last["config"]["dtype"],
                                           "block_size": block}}
        dropped |= {split["name"], entry["name"]}
    if not merged:
        return model
    config["layers"] = [merged.get(e["name"], e) for e in config["layers"] if e["name"] not in dropped]
    rebuilt = keras.Model.from_config(config)
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def _as_reshapes(entry: dict) -> list[dict]:
    (node,) = entry["inbound_nodes"]
    _, height, width, depth = node["args"][0]["config"]["shape"]
    block = entry["config"]["block_size"]
    out = depth // (block * block)
    name, dtype = entry["name"], entry["config"]["dtype"]
    split, interleave = name + SPLIT, name + INTERLEAVE
    return [_entry("Reshape", split, dtype, {"target_shape": [height, width, block, block, out]}, entry["inbound_nodes"]),
            _entry("Permute", interleave, dtype, {"dims": INTERLEAVE_DIMS}, _from(split, [None, height, width, block, block, out])),
            _entry("Reshape", name, dtype, {"target_shape": [height * block, width * block, out]},
                   _from(interleave, [None, height, block, width, block, out]))]


def _entry(class_name: str, name: str, dtype, settings: dict, inbound_nodes: list) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "registered_name": None, "name": name,
            "config": {"name": name, "trainable": True, "dtype": dtype, **settings}, "inbound_nodes": inbound_nodes}


def _from(layer_name: str, shape: list) -> list[dict]:
    tensor = {"class_name": "__keras_tensor__",
              "config": {"shape": shape, "dtype": "float32", "keras_history": [layer_name, 0, 0]}}
    return [{"args": [tensor], "kwargs": {}}]


def _sources(entry: dict) -> list[str]:
    """The layers an entry's inputs come from."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
            if history:
                found.append(history[0])
            else:
                for item in value.values():
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(entry.get("inbound_nodes", []))
    return found


def _plain_initializers(entry: dict) -> None:
    settings = entry.get("config", {})
    for key, value in list(settings.items()):
        if key.endswith("_initializer") and isinstance(value, dict) and value.get("class_name") == "ICNR":
            settings[key] = dict(GLOROT_UNIFORM)
