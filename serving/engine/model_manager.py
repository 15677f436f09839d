"""Which model versions are loaded, and how they change while requests keep flowing.

Each configured model has a base path of numbered versions (`<base>/<version>/<file>.onnx`, what
`export.run` publishes atomically). `ModelManager.apply` (start-up, a re-read models.config, a gRPC
HandleReloadConfigRequest) and `ModelManager.poll` (every --file_system_poll_wait_seconds) load the
versions the version policy wants, move labels, and only then unload the versions it no longer
wants, each after its in-flight requests finish: as TF Serving's availability-preserving policy,
a swap never leaves a request without a version. Versions report TF Serving's states.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError
from serving.engine.model_config import ModelConfig
from serving.engine.validation import few
from serving.engine.version_watch import LoadGate, versions_on_disk

log = logging.getLogger("serving.engine.model_manager")


class NotFound(LookupError):
    """An unknown model, version or label: 404 over REST, NOT_FOUND over gRPC."""


class LabelError(ConfigError):
    """A label names a version that is not loaded (gRPC: FAILED_PRECONDITION, as TF Serving)."""


LABEL_HINT = "; labels are given to the server with --labels NAME=VERSION (or version_labels in models.config)"
STATES = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}  # ModelVersionStatus.State


@dataclass
class Servable:
    version: int
    path: Path
    state: str = "START"
    generator: object = None
    batcher: object = None
    inflight: int = 0
    error: str = ""
    loaded: asyncio.Event = field(default_factory=asyncio.Event)  # set when its load ends, either way


@dataclass
class ManagedModel:
    """A model's versions (each a `Servable`) and its labels."""

    config: ModelConfig
    servables: dict[int, Servable] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def versions(self) -> dict:
        return {v: s.generator for v, s in sorted(self.servables.items()) if s.state == "AVAILABLE"}

    def pick(self, version: int | None = None, label: str | None = None) -> Servable:
        if version is not None and label:
            raise ValueError(f"Both model version ({version}) and model version label ({label}) cannot be supplied.")
        if label:
            if label not in self.labels:
                raise ValueError(f"Unrecognized servable version label: {label}{LABEL_HINT}")
            version = self.labels[label]
        if version is None:  # the newest AVAILABLE (per request: no sorted copy of the versions)
            version = max((v for v, s in self.servables.items() if s.state == "AVAILABLE"), default=None)
        servable = self.servables.get(version) if version is not None else None
        if servable is None or servable.state != "AVAILABLE":
            request = f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        return servable


class ModelManager:
    """Owns every loaded generator and its batcher; `batchers` is a live (name, version) map.

    Loads run in a worker thread with no lock held (requests, status and readiness never wait on
    one); config changes are applied one at a time. Transitions follow TF Serving's
    availability-preserving policy: a version that is no longer wanted is unloaded only once a
    wanted version is AVAILABLE (or nothing is wanted any more), so a version that fails to load,
    or is still being copied, never displaces the one serving."""

    def __init__(self, load_generator, make_batcher, allow_labels_for_unavailable: bool = False,
                 gate: LoadGate | None = None):
        self.load_generator, self.make_batcher = load_generator, make_batcher
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.gate = gate or LoadGate()
        self.models: dict[str, ManagedModel] = {}
        self.batchers: dict[tuple[str, int], object] = {}
        self._config_lock = asyncio.Lock()
        self._unloads: set[asyncio.Task] = set()
        self._reported: set = set()

    # -- requests ---------------------------------------------------------------------------------

    def pick(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The AVAILABLE version a request names (the newest when it names none); NotFound or
        ValueError (a bad label) otherwise."""
        model = self.models.get(name)
        if model is None:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}; models served: {few(sorted(self.models))}")
        return model.pick(version, label)

    @contextlib.contextmanager
    def lease(self, name: str, version: int | None = None, label: str | None = None):
        """Hold a version for one request: it is not unloaded until every lease on it ends."""
        servable = self.pick(name, version, label)
        servable.inflight += 1
        try:
            yield servable
        finally:
            servable.inflight -= 1

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[Servable]:
        model = self.models.get(name)
        if label:
            if model is None or label not in model.labels:
                raise ValueError(f"Unrecognized servable version label: {label}{LABEL_HINT}")
            version = model.labels[label]
        if version is not None:
            if model is None or version not in model.servables:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [model.servables[version]]
        if model is None or not model.servables:
            raise NotFound(f"Could not find any versions of model {name}")
        return [model.servables[v] for v in sorted(model.servables)]

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): ready while every configured model has a version AVAILABLE."""
        if not self.models:
            return False, "no models are configured"
        missing = [_unavailable_reason(model) for model in self.models.values() if not model.versions]
        return (False, "; ".join(missing)[:2000]) if missing else (True, "")

    # -- changes ----------------------------------------------------------------------------------

    async def apply(self, configs: list[ModelConfig], initial: bool = False) -> None:
        """Serve exactly these models: load, relabel, then unload what is no longer wanted."""
        async with self._config_lock:
            for config in configs:
                model = self.models.get(config.name)
                if model is None:
                    model = self.models[config.name] = ManagedModel(config)
                model.config = config
            await self._load_all([self.models[c.name] for c in configs], at_once=True)  # an operator's change
            for config in configs:
                model = self.models[config.name]
                if initial and not model.versions and config.policy == "latest":
                    await self._load_newest_that_loads(model)
                if initial and not model.versions:
                    raise ConfigError(f"model '{config.name}': no loadable version under {config.base_path} "
                                      f"(expected {config.base_path}/<version>/<file>.onnx, as export.run writes)"
                                      + (f": {_unavailable_reason(model)}" if model.servables else ""))
            for config in configs:  # every model's labels are checked before any changes
                self._check_labels(self.models[config.name], config.labels)
            for config in configs:
                self.models[config.name].labels = dict(config.labels)
            wanted = {c.name for c in configs}
            for name in [n for n in self.models if n not in wanted]:
                for servable in self.models.pop(name).servables.values():
                    self._unload(name, servable)
            for config in configs:
                self._unload_unwanted(self.models[config.name])

    async def _load_newest_that_loads(self, model: ManagedModel) -> None:
        """Start-up under the "latest" policy with none of its versions loadable (a bad new version
        published, e.g. while a --workers replacement starts): the newest older version that loads,
        so this process serves what its siblings, which loaded it before, still serve."""
        on_disk, _ = self._aspired(model)
        for version in sorted(on_disk, reverse=True):
            if version in model.servables:
                continue  # tried already, and it failed
            servable = model.servables[version] = Servable(version, on_disk[version], state="LOADING")
            await self._load(model, servable)
            if servable.state == "AVAILABLE":
                failed = "; ".join(f"version {v}: {s.error[:200]}" for v, s in sorted(model.servables.items())
                                   if s.state == "END")
                log.warning("model '%s': serving version %d, the newest that loads (%s)", model.name, version, failed)
                return

    async def poll(self) -> None:
        """Pick up versions that appeared on disk (or disappeared) for every model."""
        models = list(self.models.values())
        await self._load_all(models)
        for model in models:
            if self.models.get(model.name) is model:
                self._unload_unwanted(model)

    async def stop(self) -> None:
        async with self._config_lock:
            for name, model in self.models.items():
                for servable in model.servables.values():
                    self._unload(name, servable)
        if self._unloads:
            await asyncio.gather(*self._unloads)

    # -- internals --------------------------------------------------------------------------------

    def _aspired(self, model: ManagedModel) -> tuple[dict[int, Path], set[int]]:
        """The versions on disk and the ones the policy wants. A base path that is missing or cannot
        be listed keeps what is loaded (as TF Serving does: a remount or a moved directory comes back),
        said once until it is back."""
        base = Path(model.config.base_path)
        try:
            if not (base.is_dir() or base.is_file()):
                raise FileNotFoundError(f"{base} does not exist")
            on_disk = versions_on_disk(model.config.base_path, self._reported)
        except OSError as err:
            keep = {v for v, s in model.servables.items() if s.state == "AVAILABLE"}
            if ("base", str(base)) not in self._reported:
                self._reported.add(("base", str(base)))
                log.warning("cannot list %s (%s): keeping the loaded version(s) %s until it is back", base,
                            getattr(err, "strerror", None) or err, sorted(keep) or "(none)")
            return {}, keep
        if ("base", str(base)) in self._reported:
            self._reported.discard(("base", str(base)))
            log.info("%s is back", base)
        return on_disk, model.config.aspired(sorted(on_disk))

    async def _load_all(self, models: list[ManagedModel], at_once: bool = False) -> None:
        """Start the loads the policies want (marked LOADING at once, so no one starts them twice),
        then wait for them and for loads already under way. `at_once`: no waiting for files to
        settle (start-up and config changes; polls wait)."""
        started, waiting = [], []
        for model in models:
            on_disk, aspired = self._aspired(model)
            for version in sorted(aspired, reverse=True):  # the newest first, as TF Serving
                servable = model.servables.get(version)
                if servable is not None and servable.state == "LOADING":
                    waiting.append(servable.loaded)
                if servable is not None and servable.state in ("LOADING", "AVAILABLE", "UNLOADING"):
                    continue
                if not self.gate.may_load((model.name, version), on_disk[version], at_once):
                    continue
                servable = model.servables[version] = Servable(version, on_disk[version], state="LOADING")
                started.append((model, servable))
        for model, servable in started:
            await self._load(model, servable)
        for event in waiting:
            await event.wait()

    async def _load(self, model: ManagedModel, servable: Servable) -> None:
        key = (model.name, servable.version)
        try:
            generator = await asyncio.to_thread(self._load_and_warm_up, servable.path)
        except Exception as err:  # a broken file must not stop the versions already serving
            servable.state, servable.error = "END", f"{type(err).__name__}: {err}"[:1000]
            outcome, last = self.gate.failed(key)
            (log.error if last else log.warning)("Loading servable %s version %s failed (%s): %s", model.name,
                                                 servable.version, outcome, servable.error[:300])
            servable.loaded.set()
            return
        self.gate.loaded(key)
        servable.generator = generator
        if self.models.get(model.name) is not model or model.servables.get(servable.version) is not servable:
            servable.state, servable.generator = "END", None  # the model was removed while this version loaded
            servable.loaded.set()
            return
        servable.batcher = self.make_batcher(generator)
        self.batchers[key] = servable.batcher
        servable.state = "AVAILABLE"
        servable.loaded.set()
        log.info("Successfully loaded servable version {name: %s version: %s}", model.name, servable.version)

    def _load_and_warm_up(self, path: Path):
        """Load, then run one row, so a version that loads but cannot run never becomes AVAILABLE and
        its first real request is not the slow one."""
        generator = self.load_generator(path)
        warm_up = getattr(generator, "generate", None)
        if warm_up is not None:
            warm_up(num=1, seed=0)
        return generator

    def _check_labels(self, model: ManagedModel, labels: dict[str, int]) -> None:
        available = model.versions
        for label, version in labels.items():
            if version in available:
                continue
            if self.allow_labels_for_unavailable and label not in model.labels:
                continue  # TF Serving: a new label may name a version that is not loaded yet
            raise LabelError(f"Request to assign label to version {version} of model {model.name}, which is not "
                              f"currently available for inference. Available versions: {sorted(available)}")

    def _unload_unwanted(self, model: ManagedModel) -> None:
        """TF Serving's AvailabilityPreservingPolicy: versions no longer wanted (nor labelled) unload
        once a wanted one is AVAILABLE, or when nothing is wanted; if none is, the newest stays."""
        _, aspired = self._aspired(model)
        labelled = set(model.labels.values())
        wanted = aspired | labelled
        unwanted = sorted(v for v, s in model.servables.items() if s.state == "AVAILABLE" and v not in wanted)
        wanted_available = any(s.state == "AVAILABLE" and v in wanted for v, s in model.servables.items())
        while unwanted and (not aspired or wanted_available or len(unwanted) > 1):
            self._unload(model.name, model.servables[unwanted.pop(0)])

    def _unload(self, name: str, servable: Servable) -> None:
        if servable.state not in ("AVAILABLE", "LOADING"):
            return
        servable.state = "UNLOADING"  # no new request picks it from here on
        task = asyncio.get_running_loop().create_task(self._drain_and_stop(name, servable))
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def _drain_and_stop(self, name: str, servable: Servable) -> None:
        while servable.inflight:
            await asyncio.sleep(0.01)
        if servable.batcher is not None:
            await servable.batcher.stop()
        self.batchers.pop((name, servable.version), None)
        servable.generator = servable.batcher = None
        servable.state = "END"
        log.info("Done unloading servable version {name: %s version: %s}", name, servable.version)


def _unavailable_reason(model: ManagedModel) -> str:
    """Why a model has no AVAILABLE version, for /ready and start-up errors."""
    detail = ", ".join(f"version {v} {s.state}" + (f" ({s.error[:200]})" if s.error else "")
                       for v, s in sorted(model.servables.items())) or "no version found on disk yet"
    return f"model '{model.name}' has no AVAILABLE version: {detail}"
