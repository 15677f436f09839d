"""TF Serving configs: parsed by TF Serving's own protos where the installed package has them, and consistent."""

import pytest
from google.protobuf import message_factory, text_format

from serving.tfserving import config as tfs


def tfserving_message(name: str):
    """TF Serving's message class from the installed tensorflow-serving-api when it ships one, else the
    server's own (what --batching_parameters_file and --monitoring_config_file are read with; test_protos
    compares it with TF Serving's definition wherever the installed package has one, and says which not)."""
    from google.protobuf import descriptor_pool

    from serving import protos

    try:
        return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(f"tensorflow.serving.{name}"))
    except KeyError:
        return protos.message(f"tensorflow.serving.{name}")


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
    parsed = text_format.Parse(tfs.batching_parameters(device), tfserving_message("BatchingParameters")())
    assert parsed.max_batch_size.value == tfs.BATCHING[device]["max_batch_size"]
    assert list(parsed.allowed_batch_sizes)[-1] == parsed.max_batch_size.value  # TF Serving requires this
    assert list(parsed.allowed_batch_sizes) == sorted(parsed.allowed_batch_sizes)
    assert parsed.num_batch_threads.value >= 1 and parsed.batch_timeout_micros.value > 0


def test_monitoring_config_enables_prometheus():
    parsed = text_format.Parse(tfs.monitoring_config(), tfserving_message("MonitoringConfig")())
    assert parsed.prometheus_config.enable and parsed.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_committed_files_are_the_generated_defaults():
    assert (tfs.HERE / "models.config").read_text() == tfs.models_config("generator", "/models/generator", {"stable": 1})
    assert (tfs.HERE / "batching_parameters_cpu.txt").read_text() == tfs.batching_parameters("cpu")
    assert (tfs.HERE / "batching_parameters_gpu.txt").read_text() == tfs.batching_parameters("gpu")
    assert (tfs.HERE / "monitoring.config").read_text() == tfs.monitoring_config()


def test_write_deployment_names_the_exported_base_path(tiny_export, capsys):
    from tensorflow_serving.config import model_server_config_pb2

    assert tfs.main(["--export-dir", str(tiny_export), "--stable", "1"]) == 0
    text = (tiny_export / "tfserving" / "models.config").read_text()
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert parsed.model_config_list.config[0].base_path == "/models/generator"
    assert (tiny_export / "tfserving" / "generator" / "1" / "saved_model.pb").is_file()
    assert tfs.main(["--export-dir", str(tiny_export), "--canary", "9"]) == 2
    assert "not exported: {'canary': 9}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ['gen"erator', "gen\nerator", 'a" } config { name: "b'])
def test_model_names_are_escaped_by_text_format_and_refused_by_the_cli(name, tiny_export, capsys):
    from tensorflow_serving.config import model_server_config_pb2

    parsed = text_format.Parse(tfs.models_config(name, f"/models/{name}", {"stable": 1}),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = parsed.model_config_list.config  # a quote or newline cannot add or break a config entry
    assert model.name == name and model.base_path == f"/models/{name}"
    assert tfs.main(["--export-dir", str(tiny_export), "--model-name", name, "--stable", "1"]) == 2
    assert "is not a model export.run can write" in capsys.readouterr().err


def test_models_config_needs_no_tensorflow():
    from tests.conftest import run_python

    probe = ("import sys; from serving.tfserving import config; config.models_config('g', '/m/g', {'stable': 1}); "
             "print('tensorflow' in sys.modules)")
    result = run_python("-c", probe)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_batch_threads_are_one_per_core_of_the_serving_host(tiny_export):
    import os

    def threads(text):
        return text_format.Parse(text, tfserving_message("BatchingParameters")()).num_batch_threads.value

    assert threads((tfs.HERE / "batching_parameters_cpu.txt").read_text()) == tfs.COMMITTED_BATCH_THREADS == 4
    assert tfs.main(["--export-dir", str(tiny_export)]) == 0
    assert threads((tiny_export / "tfserving" / "batching_parameters.txt").read_text()) == os.cpu_count()
    assert tfs.main(["--export-dir", str(tiny_export), "--num-batch-threads", "3", "--device", "gpu"]) == 0
    assert threads((tiny_export / "tfserving" / "batching_parameters.txt").read_text()) == 3
    assert tfs.main(["--export-dir", str(tiny_export), "--num-batch-threads", "0"]) == 2
