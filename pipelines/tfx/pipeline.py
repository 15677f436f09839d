"""The pipeline: ImageExampleGen -> Trainer (run_fn) -> QualityGate -> Pusher, one definition for both runners.

    create_pipeline(PipelineSettings(...)) -> tfx.v1.dsl.Pipeline

`LocalDagRunner` runs it on this machine (`python -m pipelines.tfx.run`); `KubeflowV2DagRunner`
compiles the same object to a Kubeflow Pipelines v2 JSON spec (`--compile-kfp`). Everything a run
varies is in PipelineSettings, so the two runners cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfx import v1 as tfx

from pipelines.tfx.image_example_gen import ImageExampleGen, default_source, folder_source
from pipelines.tfx.quality_gate import QualityGate

RUN_FN = "pipelines.tfx.trainer_module.run_fn"


@dataclass
class PipelineSettings:
    pipeline_root: str  # TFX's artifact store: a path the components read and write as files
    serving_model_dir: str  # the model base path TF Serving and our server watch: <dir>/<unix time>/
    pipeline_name: str = "gan-serve"
    image_dir: str | None = None  # None: the embedded mnist-sample digits
    train_config: dict = field(default_factory=dict)  # TrainConfig keys (training.config), e.g. {"epochs": 1}
    model_name: str = "generator"
    max_fid: float = 40.0
    gate_samples: int = 2000
    metadata_path: str | None = None  # ML Metadata SQLite file (local runs only)

    @property
    def custom_config(self) -> dict:
        return {"train_config": dict(self.train_config), "model_name": self.model_name}


def create_pipeline(settings: PipelineSettings) -> tfx.dsl.Pipeline:
    input_base, pattern = folder_source(settings.image_dir) if settings.image_dir else default_source()
    example_gen = ImageExampleGen(input_base, pattern)
    trainer = tfx.components.Trainer(run_fn=RUN_FN, examples=example_gen.outputs["examples"],
                                     custom_config=settings.custom_config)
    gate = QualityGate(model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
                       max_fid=settings.max_fid, num_samples=settings.gate_samples)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=gate.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=settings.serving_model_dir)))
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(settings.metadata_path)
                if settings.metadata_path else None)
    return tfx.dsl.Pipeline(pipeline_name=settings.pipeline_name, pipeline_root=settings.pipeline_root,
                            components=[example_gen, trainer, gate, pusher], metadata_connection_config=metadata)
