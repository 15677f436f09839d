"""The control plane: which models and versions are served, kept apart from the data plane.

Start-up, TF Serving's two polls (new versions under each base path; a changed `--model_config_file`)
and ModelService's `HandleReloadConfigRequest` all change the served set here, through the model
manager; the request core only reads it. The protocol that asked decides how a refusal is spelled.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable

from common.errors import ConfigError
from serving.engine.model_config import ModelConfig
from serving.engine.model_manager import ModelManager

log = logging.getLogger("serving.model_control")


class ReloadRefused(Exception):
    """A reload this server cannot apply as asked (it would reach one worker process of several)."""


class ModelControl:
    """`models`: what to serve at start-up; `read_config(path)`: the models a config file names, read
    again every `config_poll_seconds` (0: never after start-up, as TF Serving); base paths are looked
    at every `file_system_poll_seconds` (0: only at start-up); `workers`: processes of one server."""

    def __init__(self, manager: ModelManager, models: list[ModelConfig], *, workers: int = 1,
                 file_system_poll_seconds: float = 1, config_file: str | None = None, config_poll_seconds: float = 0,
                 read_config: Callable[[str], list[ModelConfig]] | None = None):
        self.manager, self.models, self.workers = manager, list(models), workers
        self.file_system_poll_seconds, self.config_poll_seconds = file_system_poll_seconds, config_poll_seconds
        self.config_file, self.read_config = config_file, read_config

    async def start(self) -> None:
        """Load the start-up models: every one must have an AVAILABLE version (else ConfigError)."""
        await self.manager.apply(self.models, initial=True)

    def refusal(self) -> str | None:
        """Why a reload cannot be applied here, whatever it holds; None when it can."""
        if self.workers > 1:
            return (f"this server runs {self.workers} worker processes (--workers) and a reload would reach only "
                    "one of them; change the --model_config_file and let --model_config_file_poll_wait_seconds "
                    "apply it to all, or run with --workers 1")
        return None

    async def reload(self, models: list[ModelConfig]) -> None:
        """Serve exactly `models`, now (ReloadRefused, see `refusal`; ConfigError, or its LabelError,
        when they cannot be served)."""
        refused = self.refusal()
        if refused:
            raise ReloadRefused(refused)
        await self.manager.apply(models)

    async def poll_forever(self) -> None:
        """TF Serving's two polls, until cancelled."""
        loop = asyncio.get_running_loop()
        next_fs = loop.time() + self.file_system_poll_seconds
        next_config = loop.time() + self.config_poll_seconds
        watching_config = bool(self.config_file and self.config_poll_seconds > 0)
        last_text = Path(self.config_file).read_text(encoding="utf-8") if self.config_file else None
        while self.file_system_poll_seconds > 0 or watching_config:
            await asyncio.sleep(0.05)
            now = loop.time()
            if watching_config and now >= next_config:
                next_config = now + self.config_poll_seconds
                last_text = await self._apply_if_changed(last_text)
            if self.file_system_poll_seconds > 0 and now >= next_fs:
                next_fs = now + self.file_system_poll_seconds
                await self.manager.poll()

    async def _apply_if_changed(self, last_text: str | None) -> str | None:
        try:
            text = Path(self.config_file).read_text(encoding="utf-8")
            if text != last_text:
                await self.manager.apply(self.read_config(self.config_file))
                log.info("Applied the changed %s", self.config_file)
                return text
        except (OSError, ConfigError) as err:
            log.error("Keeping the current models: %s", err)
        return last_text
