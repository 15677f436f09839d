# syntax=docker/dockerfile:1.7
# One image per role:
#   train       TensorFlow GPU image + this package; entrypoint `python -m training.run`
#   tfserving   TensorFlow Serving (its newest release, 2.20.0), with the model
#   onnx-serve  slim Python + onnxruntime server (no TensorFlow), entrypoint `python -m serving.server`
#   onnx-serve-gpu  the same with onnxruntime-gpu on a CUDA runtime base
#
#   docker build --target train -t gan-train .
#   docker build --target tfserving --build-context model_repository=exports/tfserving -t gan-tfserving .
#   docker build --target onnx-serve --build-context onnx_models=exports/onnx-models -t gan-onnx-serve .
#
# The exported models come in through named build contexts, so .dockerignore can keep exports/ (and
# runs/) out of the main context. Without them the serving images start empty; mount /models instead.

ARG TF_VERSION=2.21.0
# TF Serving's newest release: 2.21 was never released. tools/check_tfserving_compat.py proves an
# export from TF_VERSION loads and computes the same in this TensorFlow (run it when either moves).
ARG TF_SERVING_VERSION=2.20.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Empty defaults for the named contexts (overridden by --build-context).
FROM scratch AS model_repository
FROM scratch AS onnx_models

# ---------------------------------------------------------------------------------------------- train
FROM tensorflow/tensorflow:${TF_VERSION}-gpu AS train
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/gan
# Dependencies first, keyed on pyproject.toml alone, so code changes reuse this layer.
COPY pyproject.toml README.md requirements/lock.txt ./
# DL3013 (pin pip versions): the bounds live in pyproject.toml, the tested versions in requirements/lock.txt
# (installed here as constraints, so an image gets what CI tested).
# hadolint ignore=DL3013
RUN python -c "import tomllib, subprocess, sys; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', '-c', 'lock.txt', *deps])"
COPY common/ common/
COPY training/ training/
COPY export/ export/
COPY serving/ serving/
COPY deploy/__init__.py deploy/
COPY deploy/tfserving/ deploy/tfserving/
RUN python -m pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 --user-group gan \
    && mkdir -p /runs /exports && chown 10001:10001 /runs /exports
USER 10001:10001
WORKDIR /home/gan
VOLUME ["/runs"]
ENTRYPOINT ["python", "-m", "training.run"]
CMD ["--output-dir", "/runs/default"]

# ------------------------------------------------------------------------------------------ tfserving
FROM tensorflow/serving:${TF_SERVING_VERSION} AS tfserving
COPY deploy/tfserving/batching_parameters_cpu.txt /config/batching_parameters.txt
COPY deploy/tfserving/monitoring.config /config/monitoring.config
COPY deploy/tfserving/models.config /config/models.config
COPY --from=model_repository / /models/
RUN useradd --create-home --uid 10001 --user-group tfserving
USER 10001:10001
EXPOSE 8500 8501
# /models/models.config, when the export wrote one (python -m deploy.tfserving.config), replaces the
# default: pass --model_config_file=/models/models.config as the container's command. Labels in a
# models.config stop the server at start-up unless --allow_version_labels_for_unavailable_models
# is set (tensorflow/serving#1230): the versions are not loaded yet when the labels are assigned.
ENTRYPOINT ["tensorflow_model_server", "--port=8500", "--rest_api_port=8501", \
            "--model_config_file_poll_wait_seconds=60", "--allow_version_labels_for_unavailable_models=true", \
            "--enable_batching", \
            "--batching_parameters_file=/config/batching_parameters.txt", \
            "--monitoring_config_file=/config/monitoring.config"]
CMD ["--model_config_file=/config/models.config"]

# ----------------------------------------------------------------------------------------- onnx-serve
FROM ${PYTHON_IMAGE} AS onnx-serve
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/gan
COPY pyproject.toml README.md requirements/lock.txt ./
# Exactly the `serve` extra: numpy, onnxruntime, protobuf, grpcio, starlette, uvicorn, prometheus-client.
# DL3013 (pin pip versions): the bounds live in pyproject.toml, the tested versions in requirements/lock.txt
# (installed here as constraints, so an image gets what CI tested).
# hadolint ignore=DL3013
RUN python -c "import tomllib, subprocess, sys; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['serve']; subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', '-c', 'lock.txt', *deps])"
# Only what serves: the bottom utilities and the server (training/ and export/ need TensorFlow).
COPY common/ common/
COPY serving/ serving/
RUN python -m pip install --no-cache-dir --no-deps . \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)" \
    && useradd --create-home --uid 10001 --user-group serve
COPY --from=onnx_models / /models/
USER 10001:10001
EXPOSE 8500 8501
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/ready', timeout=2).status != 200)"]
ENTRYPOINT ["python", "-m", "serving.server", "--host", "0.0.0.0"]
CMD ["--model-base-path", "/models/generator"]

# ------------------------------------------------------------------------------------- onnx-serve-gpu
# The same server with onnxruntime-gpu on a CUDA runtime base; run it with `--device cuda`, which
# refuses to start when the CUDA provider is not really active.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS onnx-serve-gpu
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
# DL3008 (pin apt versions): the CUDA base image pins the distribution; python3 follows it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /opt/gan
COPY pyproject.toml README.md requirements/lock.txt ./
# The `serve` extra with onnxruntime swapped for onnxruntime-gpu.
# hadolint ignore=DL3013
RUN python -c "import tomllib, subprocess, sys; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['serve']; deps = [d.replace('onnxruntime', 'onnxruntime-gpu', 1) if d.startswith('onnxruntime') else d for d in deps]; subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', '-c', 'lock.txt', *deps])"
# Only what serves: the bottom utilities and the server (training/ and export/ need TensorFlow).
COPY common/ common/
COPY serving/ serving/
RUN python -m pip install --no-cache-dir --no-deps . \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)" \
    && useradd --create-home --uid 10001 --user-group serve
COPY --from=onnx_models / /models/
USER 10001:10001
EXPOSE 8500 8501
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/ready', timeout=2).status != 200)"]
ENTRYPOINT ["python", "-m", "serving.server", "--host", "0.0.0.0", "--device", "cuda"]
CMD ["--model-base-path", "/models/generator"]
