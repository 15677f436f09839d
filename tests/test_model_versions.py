"""Version transitions in the model manager, in-process on tiny ONNX models:
a bad or half-copied version never displaces the serving one, failed loads are retried a bounded
number of times, and readiness says whether predictions can be answered."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from serving.engine.model_manager import ModelManager
from serving.engine.onnx_generator import OnnxGenerator
from serving.engine.model_manager import NotFound
from serving.protocols.tfserving.config_files import ModelConfig
from serving.engine.version_watch import LoadGate
from tests.onnx_models import model_bytes, write_version


class Batcher:
    async def stop(self):
        pass


class Clocks:
    """A monotonic clock and a wall clock the test moves by hand (file times are real)."""

    def __init__(self):
        self.mono, self.wall = 0.0, time.time()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def manager_with(gate: LoadGate, attempts: list | None = None) -> ModelManager:
    def load(path):
        if attempts is not None:
            attempts.append(path)
        return OnnxGenerator(path)
    return ModelManager(load, lambda generator: Batcher(), gate=gate)


async def drained(manager: ModelManager) -> None:
    if manager._unloads:
        await asyncio.gather(*manager._unloads)


def write_garbage(base, version: int, content: bytes = b"not an onnx model") -> None:
    staging = base / f".garbage-{version}"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(content)
    staging.rename(base / str(version))


def states(manager: ModelManager, name: str = "g") -> dict[int, str]:
    return {v: s.state for v, s in manager.models[name].servables.items()}


def test_a_version_that_fails_to_load_never_displaces_the_serving_one(tmp_path):
    async def scenario():
        write_version(tmp_path, 1)
        manager = manager_with(LoadGate(settle_seconds=0))
        await manager.apply([ModelConfig("g", str(tmp_path), "latest")], initial=True)
        write_garbage(tmp_path, 2)
        for _ in range(3):
            await manager.poll()
        await drained(manager)
        assert states(manager) == {1: "AVAILABLE", 2: "END"}
        assert manager.models["g"].servables[2].error  # reported in the model status
        assert manager.models["g"].pick().version == 1  # "latest" still answers, from version 1
        assert manager.readiness() == (True, "")
    asyncio.run(scenario())


def test_a_half_copied_version_is_loaded_once_its_files_settle(tmp_path):
    async def scenario():
        clocks = Clocks()
        write_version(tmp_path, 1)
        manager = manager_with(LoadGate(settle_seconds=2, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall))
        await manager.apply([ModelConfig("g", str(tmp_path), "latest")], initial=True)
        data = model_bytes(seed=2)
        (tmp_path / "2").mkdir()
        with open(tmp_path / "2" / "model.onnx", "wb") as half:  # a plain cp, half-way
            half.write(data[: len(data) // 2])
            half.flush()
            await manager.poll()
            assert states(manager) == {1: "AVAILABLE"} and manager.models["g"].pick().version == 1
            half.write(data[len(data) // 2:])
        await manager.poll()  # complete, but written just now: still settling
        assert states(manager) == {1: "AVAILABLE"}
        clocks.advance(3)
        await manager.poll()
        await drained(manager)
        assert states(manager) == {1: "END", 2: "AVAILABLE"}  # the new one loaded before the old one left
        assert manager.models["g"].pick().version == 2
    asyncio.run(scenario())


def test_failed_loads_are_retried_a_bounded_number_of_times_then_when_files_change(tmp_path, caplog):
    async def scenario():
        clocks, attempts = Clocks(), []
        write_version(tmp_path, 1)
        gate = LoadGate(settle_seconds=0, max_retries=2, retry_interval=60, clock=lambda: clocks.mono,
                        wall_clock=lambda: clocks.wall)
        manager = manager_with(gate, attempts)
        await manager.apply([ModelConfig("g", str(tmp_path), "latest")], initial=True)
        write_garbage(tmp_path, 2)
        counts = []
        for _ in range(5):  # 5 rounds of 60 s of 1 s polls
            for _ in range(60):
                await manager.poll()
                clocks.advance(1)
            counts.append(len(attempts) - 1)
        assert counts == [1, 2, 3, 3, 3]  # the first try and 2 retries, 60 s apart, then no more
        (tmp_path / "2" / "model.onnx").write_bytes(b"other garbage, of another size")
        for _ in range(3):
            await manager.poll()
            clocks.advance(1)
        assert len(attempts) - 1 == 4  # its files changed: tried again
        assert manager.models["g"].pick().version == 1
    caplog.set_level(logging.INFO, logger="serving")
    asyncio.run(scenario())
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING and "Loading servable" in r.getMessage()]
    assert len(failures) == 4, [r.getMessage() for r in failures]
    assert "attempt 3 of 3; not retried until its files change" in failures[2].getMessage()
    assert all("\n" not in r.getMessage() for r in failures)
    # A retry is a WARNING; only the attempt after which the server stops trying is an ERROR.
    assert [r.levelno for r in failures] == [logging.WARNING, logging.WARNING, logging.ERROR, logging.WARNING]


def test_readiness_says_whether_predictions_can_be_answered(tmp_path):
    async def scenario():
        write_version(tmp_path / "a", 1)
        manager = manager_with(LoadGate(settle_seconds=0))
        await manager.apply([ModelConfig("a", str(tmp_path / "a"), "latest")], initial=True)
        assert manager.readiness() == (True, "")
        (tmp_path / "b").mkdir()
        write_garbage(tmp_path / "b", 1)
        await manager.apply([ModelConfig("a", str(tmp_path / "a"), "latest"),
                             ModelConfig("b", str(tmp_path / "b"), "latest")])
        ready, reason = manager.readiness()
        assert not ready and "model 'b' has no AVAILABLE version: version 1 END" in reason
        await manager.apply([])  # HandleReloadConfigRequest with an empty config
        await drained(manager)
        assert manager.readiness() == (False, "no models are configured")
        with pytest.raises(NotFound):
            with manager.lease("a"):
                pass
    asyncio.run(scenario())


def test_a_version_removed_from_disk_unloads_when_another_serves(tmp_path):
    async def scenario():
        write_version(tmp_path, 1)
        write_version(tmp_path, 2, seed=2)
        manager = manager_with(LoadGate(settle_seconds=0))
        await manager.apply([ModelConfig("g", str(tmp_path), "all")], initial=True)
        os.remove(tmp_path / "1" / "model.onnx")
        os.rmdir(tmp_path / "1")
        await manager.poll()
        await drained(manager)
        assert states(manager) == {1: "END", 2: "AVAILABLE"}
    asyncio.run(scenario())


def test_a_base_path_that_disappears_for_a_while_keeps_the_loaded_versions(tmp_path, caplog):
    """A remount or a moved directory: every poll while it is gone keeps what is loaded, says so once,
    and says when it is back; a version that really went away still unloads after that."""
    base = tmp_path / "g"

    async def scenario():
        write_version(base, 1)
        write_version(base, 2, seed=2)
        manager = manager_with(LoadGate(settle_seconds=0))
        await manager.apply([ModelConfig("g", str(base), "all")], initial=True)
        base.rename(tmp_path / "elsewhere")
        with caplog.at_level(logging.INFO, logger="serving.engine.model_manager"):
            for _ in range(5):
                await manager.poll()
        await drained(manager)
        assert states(manager) == {1: "AVAILABLE", 2: "AVAILABLE"}
        assert manager.pick("g").state == "AVAILABLE" and manager.readiness()[0]
        said = [r.getMessage() for r in caplog.records if "keeping the loaded version" in r.getMessage()]
        assert len(said) == 1 and "[1, 2]" in said[0], said
        (tmp_path / "elsewhere").rename(base)
        with caplog.at_level(logging.INFO, logger="serving.engine.model_manager"):
            await manager.poll()
        assert any("is back" in r.getMessage() for r in caplog.records)
        os.remove(base / "1" / "model.onnx")
        os.rmdir(base / "1")
        await manager.poll()
        await drained(manager)
        assert states(manager) == {1: "END", 2: "AVAILABLE"}
    asyncio.run(scenario())


def test_a_fresh_start_under_latest_serves_the_newest_version_that_loads(tmp_path, caplog):
    """A bad newest version published: a process that starts now (a --workers replacement) serves
    what its siblings loaded before, not nothing; under "specific" it still serves only what was asked."""
    async def scenario():
        write_version(tmp_path, 1)
        write_garbage(tmp_path, 2)
        manager = manager_with(LoadGate(settle_seconds=0))
        with caplog.at_level(logging.WARNING, logger="serving.engine.model_manager"):
            await manager.apply([ModelConfig("g", str(tmp_path), "latest")], initial=True)
        assert states(manager) == {1: "AVAILABLE", 2: "END"}
        assert any("serving version 1, the newest that loads (version 2:" in r.getMessage() for r in caplog.records)
        await manager.poll()  # the bad version is retried by the gate's rules; version 1 keeps serving
        await drained(manager)
        assert states(manager)[1] == "AVAILABLE"
        specific = manager_with(LoadGate(settle_seconds=0))
        with pytest.raises(Exception, match="no loadable version"):
            await specific.apply([ModelConfig("g", str(tmp_path), "specific", versions=(2,))], initial=True)
    asyncio.run(scenario())
