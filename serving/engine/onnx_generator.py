"""Run an exported generator with onnxruntime, in any app: needs numpy and onnxruntime, nothing more.

    from serving.engine.onnx_generator import OnnxGenerator

    generator = OnnxGenerator("exports/onnx/generator.onnx", device="auto")
    images = generator.generate(num=16, seed=0, output="uint8")   # [16, H, W, C] uint8

`variant="int8"` (or "fp16") loads the quality-gated variant export.run published beside the file
(`generator.int8.onnx`); `variant="auto"` takes the one the chosen device runs fastest when it was
published (int8 on CPU, fp16 on CUDA), else float32. `generator.description` says what was picked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from common.signature import GeneratorSignature, labels_in_turn, random_z
from serving.engine.validation import InputError, ModelInfo, check_inputs, check_labels  # noqa: F401 (re-exported)

DEVICES = ("auto", "cpu", "cuda")
VARIANTS = ("int8", "fp16")  # export.variants builds these; float32 is the file itself
FAST_VARIANT = {"CPUExecutionProvider": "int8", "CUDAExecutionProvider": "fp16"}
log = logging.getLogger(__name__)
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


def variant_file(path: Path, variant: str | None) -> Path:
    """`dir/generator.onnx` -> `dir/generator.int8.onnx`; None or "float32" -> the file itself."""
    path = Path(path)
    return path if variant in (None, "float32") else path.with_name(f"{path.stem}.{variant}.onnx")


def load_model_card(onnx_path: Path) -> dict | None:
    """The card export.run writes beside the model (`<name>.model_card.json` or `model_card.json`);
    a variant (`<name>.int8.onnx`) shares its float32 model's card."""
    stem = onnx_path.stem.rsplit(".", 1)[0] if onnx_path.stem.rsplit(".", 1)[-1] in VARIANTS else onnx_path.stem
    for candidate in (onnx_path.with_name(f"{stem}.model_card.json"), onnx_path.parent / "model_card.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return None


class OnnxGenerator:
    """An exported generator in an onnxruntime session.

    `device`: "auto" (CUDA when onnxruntime has it, else CPU), "cpu", or "cuda" (fails loudly when
    the CUDA provider is not really active, since onnxruntime otherwise falls back to CPU silently).
    `variant`: None/"float32" (the file given), "int8", "fp16", or "auto" (see the module docstring).
    """

    def __init__(self, path: str | Path, device: str = "auto", intra_op_threads: int | None = None,
                 inter_op_threads: int | None = None, graph_optimization: str = "all", max_chunk: int = 256,
                 variant: str | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist; export one with python -m export.run.")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if variant not in (None, "float32", "auto", *VARIANTS):
            raise ValueError(f"variant must be one of float32, auto, {', '.join(VARIANTS)}; got {variant!r}")
        if variant in VARIANTS and not variant_file(self.path, variant).is_file():
            raise FileNotFoundError(
                f"there is no {variant} variant beside {self.path} (expected {variant_file(self.path, variant)}): "
                f"export with python -m export.run --variants {variant}; it is published only if it passes "
                "its quality gate (see the model card's 'variants').")
        if graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ValueError(f"graph_optimization must be one of {GRAPH_OPTIMIZATIONS}, got {graph_optimization!r}")
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        if inter_op_threads:
            options.inter_op_num_threads = inter_op_threads
        available = ort.get_available_providers()
        wants_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device='cuda' but this onnxruntime has no CUDA provider (available: {available}). "
                               "Install onnxruntime-gpu (pip install '.[gpu]') on a machine with CUDA.")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if wants_cuda else ["CPUExecutionProvider"]
        if variant == "auto":  # the provider that will really run it decides; then its fast variant if published
            fast = variant_file(self.path, FAST_VARIANT[providers[0]])
            variant = FAST_VARIANT[providers[0]] if fast.is_file() else None
        self.path = variant_file(self.path, variant)
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        if device == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"device='cuda' but onnxruntime fell back to {self.session.get_providers()}: "
                               "check the CUDA and cuDNN libraries match this onnxruntime-gpu build.")
        self.max_chunk = max_chunk
        self.info = self._read_info()
        self.variant = self.session.get_modelmeta().custom_metadata_map.get("variant", "float32")
        if variant == "fp16" and self.providers[0] == "CPUExecutionProvider":
            log.warning("the fp16 variant runs on CPU here: correct, but slower than float32 (it is meant for CUDA)")
        log.info("onnxruntime: %s", self.description)

    @property
    def description(self) -> str:
        """What was picked, e.g. 'generator.int8.onnx (int8) on CPUExecutionProvider'."""
        return f"{self.path.name} ({self.variant}) on {self.providers[0]}"

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _read_info(self) -> ModelInfo:
        inputs = {i.name: i for i in self.session.get_inputs()}
        if "z" not in inputs or self.session.get_outputs()[0].name != "images":
            raise ValueError(f"{self.path} is not a generator exported by export.run (needs input 'z', output 'images').")
        meta = self.session.get_modelmeta().custom_metadata_map
        card = load_model_card(self.path)
        num_classes = int(meta.get("num_classes", "0")) or (card or {}).get("num_classes") or None
        if "label" in inputs and not num_classes:
            raise ValueError(f"{self.path} takes labels but records no class count (metadata or model card).")
        image_shape = tuple(int(d) for d in self.session.get_outputs()[0].shape[1:])
        info = ModelInfo(int(inputs["z"].shape[1]), image_shape, num_classes if "label" in inputs else None,
                         tuple(inputs), card)
        carded = GeneratorSignature.from_card(card) if card and "latent_dim" in card and "image_shape" in card else None
        if carded is not None and carded != info.signature:
            raise ValueError(f"{self.path} does not match its model card: the model is {info.signature}, the card "
                             f"says {carded}; export it again with python -m export.run")
        return info

    # -- inference ------------------------------------------------------------------------------

    def validate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, shapes, dtypes, ranges and finiteness; return arrays of the model's dtypes
        (`serving.engine.validation.check_inputs`, the same check every server front end makes)."""
        return check_inputs(self.info, inputs)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs -> float32 images in [-1, 1]: validated once, then `run_checked`."""
        return self.run_checked(self.validate(inputs))

    def run_checked(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Already validated inputs (the server's batcher) -> images, in chunks of at most `max_chunk` rows."""
        n = len(inputs["z"])
        if n <= self.max_chunk:
            return self.session.run(["images"], inputs)[0]
        chunks = [self.session.run(["images"], {k: v[i : i + self.max_chunk] for k, v in inputs.items()})[0]
                  for i in range(0, n, self.max_chunk)]
        return np.concatenate(chunks)

    def generate(self, num: int | None = None, z: np.ndarray | None = None, labels=None,
                 seed: int | None = None, output: str = "float") -> np.ndarray:
        """Images from `z` (or `num` standard-normal draws from `seed`).

        For a class-conditional model, `labels` is one int for all rows or one per row; by default
        the rows cycle through the classes. `output`: "float" ([-1, 1] float32) or "uint8".
        """
        if output not in ("float", "uint8"):
            raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
        if z is None:
            if num is None or num <= 0:
                raise ValueError("pass num > 0 or z")
            z = random_z(num, self.info.latent_dim, seed)
        inputs = {"z": np.asarray(z, dtype=np.float32)}
        if self.info.num_classes:
            n = len(inputs["z"])
            if labels is None:
                labels = labels_in_turn(n, self.info.num_classes)
            labels = check_labels(labels, self.info.num_classes)  # the values given, before any broadcast
            inputs["label"] = np.broadcast_to(labels, (n,)).copy()
        elif labels is not None:
            raise ValueError("this generator is unconditional: it takes no labels")
        images = self.run(inputs)
        if output == "uint8":
            return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return images
