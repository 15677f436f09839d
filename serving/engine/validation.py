"""The one check of a generator's inputs, shared by in-process `OnnxGenerator` and every server front end.

Why one module: the checks used to run three times per request (the server's service, then
`OnnxGenerator.validate`, then `OnnxGenerator.run`), with slightly different words. Now a front end
calls `check_shapes` on the shapes a request declares (before anything is allocated), then
`check_inputs` turns the values into the arrays the model takes; the batcher and onnxruntime trust
what comes out. Needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from common.signature import GeneratorSignature


class InputError(ValueError):
    """Inputs that do not fit the model: the message says which input and what it needs."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded generator is: its signature's fields, its graph's input names, its model card."""

    latent_dim: int
    image_shape: tuple[int, int, int]
    num_classes: int | None
    input_names: tuple[str, ...]
    card: dict | None

    @cached_property  # once per loaded model: check_shapes reads it on every request
    def signature(self) -> GeneratorSignature:
        return GeneratorSignature(self.latent_dim, self.image_shape, self.num_classes)


def expected_inputs(info: ModelInfo) -> dict[str, tuple[int, ...]]:
    """Each input's shape after the batch dimension: z is [batch, latent], label is [batch]."""
    return info.signature.input_shapes()


def few(names, shown: int = 5) -> str:
    """A client's names in a message, bounded: 10,000 made-up names are not echoed back."""
    names = list(names)
    listed = str([str(name)[:64] for name in names[:shown]])
    return listed if len(names) <= shown else f"{listed[:-1]}, ... ({len(names)} in all)]"


def check_shapes(info: ModelInfo, shapes: dict[str, tuple[int, ...]], max_rows: int | None = None) -> int:
    """Names, ranks, sizes and rows against the signature (and `max_rows`); returns the most values
    any one input may hold. Needs only shapes, so gRPC calls it before building any array."""
    expected = expected_inputs(info)
    if set(shapes) != set(expected):
        missing, unknown = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
        raise InputError(f"inputs must be exactly {sorted(expected)}" + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {few(unknown)}" if unknown else ""))
    if tuple(shapes["z"])[:1] == (0,):
        raise InputError("the batch is empty: send at least one row")
    for key, tail in expected.items():
        shape = tuple(shapes[key])
        if len(shape) != 1 + len(tail) or shape[1:] != tail:
            wanted = ", ".join(["batch", *(str(size) for size in tail)])
            raise InputError(f"input '{key}' must have shape [{wanted}], got {list(shape)}")
    rows = shapes["z"][0]
    if max_rows is not None and rows > max_rows:
        raise InputError(f"batch of {rows} rows is over this server's per-request limit of {max_rows}; "
                         "split the request")
    if "label" in expected and shapes["label"][0] != rows:
        raise InputError(f"input 'label' must have shape [{rows}] (one per row of z), got {list(shapes['label'])}")
    return rows * max(info.latent_dim, 1)


def check_inputs(info: ModelInfo, inputs: dict, max_rows: int | None = None) -> dict[str, np.ndarray]:
    """Arrays, nested lists or decoded tensors -> {"z": float32, "label": int32}, checked once:
    names, shapes, row limit, numeric types, finiteness and class range."""
    arrays = {key: as_numeric(key, value) for key, value in inputs.items()}
    check_shapes(info, {key: array.shape for key, array in arrays.items()}, max_rows)
    z = arrays["z"]
    if z.dtype.kind == "b":
        raise InputError("input 'z' must be float, got bool")
    if z.dtype != np.float32:
        z = z.astype(np.float32)
    if not np.isfinite(z).all():
        raise InputError("input 'z' contains NaN or infinity")
    checked = {"z": z}
    if info.num_classes:
        checked["label"] = check_labels(inputs["label"], info.num_classes, arrays["label"])
    return checked


def check_labels(value, num_classes: int, array: np.ndarray | None = None) -> np.ndarray:
    """Class ids as int32, checked on the values given, before any cast (a cast first would wrap
    2**32 + 3 to 3, and True to 1)."""
    flat = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, (bool, np.bool_)) for v in flat):
        raise InputError("input 'label' must hold integer class ids, not booleans")
    labels = as_numeric("label", value) if array is None else array
    if labels.dtype.kind == "b":
        raise InputError("input 'label' must hold integer class ids, not booleans")
    if labels.dtype.kind == "f" and (not np.isfinite(labels).all() or (labels != np.round(labels)).any()):
        raise InputError("input 'label' must hold integers")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(f"input 'label' must be in [0, {num_classes - 1}]")
    return labels if labels.dtype == np.int32 else labels.astype(np.int32)


def as_numeric(name: str, value) -> np.ndarray:
    """A JSON value or decoded tensor as an array (no copy when it already is one); ragged,
    nested-too-deep or non-numeric input is an InputError."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InputError(f"input '{name}' is not a rectangular numeric array: every row must have the same "
                         "length") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise InputError(f"input '{name}' must be numeric, got {array.dtype}")
    return array
