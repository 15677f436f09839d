"""TF Serving configs: parsed by TF Serving's own protos where the installed package has them, and consistent."""

import functools
import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from serving.protos import build_descriptors
from deploy.tfserving import config as tfs


@functools.cache
def compiled_pool() -> descriptor_pool.DescriptorPool:
    """TF Serving's own session_bundle_config.proto and monitoring_config.proto, compiled here by
    protoc from the .proto text (not read from the descriptors the server ships)."""
    pool = descriptor_pool.DescriptorPool()
    imports = build_descriptors._config_imports()
    for file_descriptor in imports:
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        pool.Add(proto)
    for proto in build_descriptors.compile_config_protos(imports).file:
        pool.Add(proto)
    return pool


def documented_message(name: str):
    """BatchingParameters / MonitoringConfig as TF Serving defines them; tensorflow-serving-api does
    not ship these two messages."""
    return message_factory.GetMessageClass(compiled_pool().FindMessageTypeByName(f"tensorflow.serving.{name}"))


def test_models_config_parses_as_model_server_config():
    from tensorflow_serving.config import model_server_config_pb2

    text = tfs.models_config("generator", "/models/generator", {"stable": 1, "canary": 2})
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (model,) = parsed.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("generator", "/models/generator", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    latest = text_format.Parse(tfs.models_config("g", "/m/g"), model_server_config_pb2.ModelServerConfig())
    assert latest.model_config_list.config[0].model_version_policy.latest.num_versions == 1


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_batching_parameters_use_tf_servings_field_names(device):
    parsed = text_format.Parse(tfs.batching_parameters(device), documented_message("BatchingParameters")())
    assert parsed.max_batch_size.value == tfs.BATCHING[device]["max_batch_size"]
    assert list(parsed.allowed_batch_sizes)[-1] == parsed.max_batch_size.value  # TF Serving requires this
    assert list(parsed.allowed_batch_sizes) == sorted(parsed.allowed_batch_sizes)
    assert parsed.num_batch_threads.value >= 1 and parsed.batch_timeout_micros.value > 0


def test_monitoring_config_enables_prometheus():
    parsed = text_format.Parse(tfs.monitoring_config(), documented_message("MonitoringConfig")())
    assert parsed.prometheus_config.enable and parsed.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_committed_files_are_the_generated_defaults():
    assert (tfs.HERE / "models.config").read_text() == tfs.models_config("generator", "/models/generator", {"stable": 1})
    assert (tfs.HERE / "batching_parameters_cpu.txt").read_text() == tfs.batching_parameters("cpu")
    assert (tfs.HERE / "batching_parameters_gpu.txt").read_text() == tfs.batching_parameters("gpu")
    assert (tfs.HERE / "monitoring.config").read_text() == tfs.monitoring_config()


@pytest.fixture
def export_dir(tiny_export, tmp_path):
    """A copy of the session's export: these tests write TF Serving configs into it, which would
    change what the tests reading the shared export see, depending on the order they run in."""
    import shutil

    return Path(shutil.copytree(tiny_export, tmp_path / "exports"))


def test_write_deployment_names_the_exported_base_path(export_dir, capsys):
    from tensorflow_serving.config import model_server_config_pb2

    assert tfs.main(["--export-dir", str(export_dir), "--stable", "1"]) == 0
    text = (export_dir / "tfserving" / "models.config").read_text()
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert parsed.model_config_list.config[0].base_path == "/models/generator"
    assert (export_dir / "tfserving" / "generator" / "1" / "saved_model.pb").is_file()
    assert tfs.main(["--export-dir", str(export_dir), "--canary", "9"]) == 2
    assert "not exported: {'canary': 9}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ['gen"erator', "gen\nerator", 'a" } config { name: "b'])
def test_model_names_are_escaped_by_text_format_and_refused_by_the_cli(name, export_dir, capsys):
    from tensorflow_serving.config import model_server_config_pb2

    parsed = text_format.Parse(tfs.models_config(name, f"/models/{name}", {"stable": 1}),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = parsed.model_config_list.config  # a quote or newline cannot add or break a config entry
    assert model.name == name and model.base_path == f"/models/{name}"
    assert tfs.main(["--export-dir", str(export_dir), "--model-name", name, "--stable", "1"]) == 2
    assert "is not a model export.run can write" in capsys.readouterr().err


def test_models_config_needs_no_tensorflow():
    from tests.conftest import run_python

    probe = ("import sys; from deploy.tfserving import config; config.models_config('g', '/m/g', {'stable': 1}); "
             "print('tensorflow' in sys.modules)")
    result = run_python("-c", probe)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_batch_threads_are_one_per_core_of_the_serving_host(export_dir):
    import os

    def threads(text):
        return text_format.Parse(text, documented_message("BatchingParameters")()).num_batch_threads.value

    assert threads((tfs.HERE / "batching_parameters_cpu.txt").read_text()) == tfs.COMMITTED_BATCH_THREADS == 4
    assert tfs.main(["--export-dir", str(export_dir)]) == 0
    assert threads((export_dir / "tfserving" / "batching_parameters.txt").read_text()) == os.cpu_count()
    assert tfs.main(["--export-dir", str(export_dir), "--num-batch-threads", "3", "--device", "gpu"]) == 0
    assert threads((export_dir / "tfserving" / "batching_parameters.txt").read_text()) == 3
    assert tfs.main(["--export-dir", str(export_dir), "--num-batch-threads", "0"]) == 2


# -- every field TF Serving defines ----------------------------------------------------------------

EVERY_BATCHING_FIELD = """
max_batch_size { value: 64 }
batch_timeout_micros { value: 1500 }
max_enqueued_batches { value: 20 }
num_batch_threads { value: 3 }
thread_pool_name { value: "batch_threads" }
enable_large_batch_splitting { value: true }
max_execution_batch_size { value: 32 }
allowed_batch_sizes: 8
allowed_batch_sizes: 16
allowed_batch_sizes: 32
pad_variable_length_inputs: true
"""


def test_a_batching_file_with_every_field_tf_serving_defines_is_accepted(tmp_path, caplog):
    from serving.config import ServerConfig
    from serving.protocols.tfserving import config_files as server_config

    fields = {f.name for f in documented_message("BatchingParameters").DESCRIPTOR.fields}
    used = {line.split()[0].rstrip(":") for line in EVERY_BATCHING_FIELD.strip().splitlines()}
    assert used == fields, f"TF Serving's BatchingParameters has fields this test does not use: {fields - used}"
    path = tmp_path / "batching.txt"
    path.write_text(EVERY_BATCHING_FIELD)
    settings = server_config.read_batching_parameters(path)
    assert (settings.max_batch_size, settings.batch_timeout_micros, settings.max_enqueued_batches,
            settings.num_batch_threads, settings.allowed_batch_sizes) == (64, 1500, 20, 3, (8, 16, 32))
    (tmp_path / "m").mkdir()
    args = ServerConfig.from_argv(["--model-base-path", str(tmp_path / "m"), "--enable_batching",
                                   f"--batching_parameters_file={path}"])
    assert (args.max_batch_size, args.num_batch_threads) == (64, 3)
    reports = [notice for notice in args.notices if "no effect" in notice]
    assert len(reports) == 1 and all(name in reports[0] for name in (
        "thread_pool_name", "enable_large_batch_splitting", "max_execution_batch_size", "allowed_batch_sizes",
        "pad_variable_length_inputs")), reports


def test_a_monitoring_file_with_every_field_tf_serving_defines_is_accepted(tmp_path):
    from serving.protocols.tfserving import config_files as server_config

    assert {f.name for f in documented_message("MonitoringConfig").DESCRIPTOR.fields} == {"prometheus_config"}
    assert {f.name for f in documented_message("PrometheusConfig").DESCRIPTOR.fields} == {"enable", "path"}
    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true path: "/m" }\n')
    assert server_config.read_monitoring_config(path) == "/m"


@pytest.mark.parametrize("text, message", [
    # Not a BatchingParameters field in TF Serving 2.20.0 (it belongs to the TFRT adapter's config):
    # TF Serving refuses the file, and so do we, with the same words.
    ("max_batch_size { value: 8 }\nbatch_padding_policy: \"PAD_UP\"\n", 'no field named "batch_padding_policy"'),
    ("max_batch_size { value: 8 }\nenable_large_batch_splitting { value: true }\n"
     "max_execution_batch_size { value: 16 }\n", "must not exceed max_batch_size"),
    ("max_batch_size { value: 32 }\nenable_large_batch_splitting { value: true }\n"
     "max_execution_batch_size { value: 16 }\nallowed_batch_sizes: 32\n", "end with max_execution_batch_size (16)"),
])
def test_batching_files_tf_serving_refuses_are_refused(tmp_path, text, message):
    from serving.protocols.tfserving import config_files as server_config

    path = tmp_path / "batching.txt"
    path.write_text(text)
    with pytest.raises(server_config.ConfigError, match=re.escape(message)):
        server_config.read_batching_parameters(path)


def test_config_messages_are_compiled_from_tf_servings_own_proto_files():
    shipped = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(build_descriptors.OUTPUT.read_bytes()).file}
    compiled = build_descriptors.compile_config_protos().file
    assert [f.name for f in compiled] == build_descriptors.CONFIG_PROTOS
    for proto in compiled:
        assert shipped[proto.name] == proto, f"{proto.name}: run python -m serving.protos.build_descriptors"
    assert not [name for name in shipped if name.startswith("gan_serve/")], "no hand-declared messages"


def test_a_roll_out_keeps_the_deployments_gpu_batching_and_container_root(export_dir):
    """The documented roll-out commands name only labels: they must not turn GPU batching back into
    CPU batching, nor move the base path to the default container root."""
    target = export_dir / "tfserving"
    assert tfs.main(["--export-dir", str(export_dir), "--stable", "1", "--device", "gpu",
                     "--container-root", "/mnt/repo", "--num-batch-threads", "8"]) == 0
    gpu = (target / "batching_parameters.txt").read_text()
    assert gpu == tfs.batching_parameters("gpu", 8)
    assert tfs.main(["--export-dir", str(export_dir), "--stable", "1", "--canary", "1"]) == 0  # a roll-out
    assert (target / "batching_parameters.txt").read_text() == gpu
    assert '"/mnt/repo/generator"' in (target / "models.config").read_text()
    assert tfs.main(["--export-dir", str(export_dir), "--stable", "1", "--device", "cpu"]) == 0  # said: rewritten
    assert "max_batch_size { value: 32 }" in (target / "batching_parameters.txt").read_text()
