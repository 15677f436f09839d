"""Dynamic batching: concurrent requests for one model are merged into one onnxruntime call.

At most `num_batch_threads` batches run at once, off the event loop (the onnxruntime session is
thread-safe and releases the GIL). While all runners are busy, arriving requests queue and leave
together as the next batch (up to `max_batch_size` rows). Once a runner is free, the batch waits
at most `max_queue_delay_ms` after its first request for others to join (0: leave at once, so an
idle server adds no latency: such a request, finding a runner free and nobody queued, runs at once
without passing through the collector). With batching off, every request runs on its own.

The queue is bounded like TF Serving's `max_enqueued_batches`: when `max_enqueued_batches` full
batches already wait, a new request is refused at once (`QueueFull`: 429 / RESOURCE_EXHAUSTED)
rather than waiting behind work it cannot overtake. A request whose client has gone (its task was
cancelled) leaves the queue and is never computed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.engine.onnx_generator import OnnxGenerator


class QueueFull(RuntimeError):
    """The batch queue is full: the server is overloaded, try again later."""


class DynamicBatcher:
    def __init__(self, model: OnnxGenerator, max_batch_size: int = 32, max_queue_delay_ms: float = 0.0,
                 num_batch_threads: int = 2, enabled: bool = True, on_batch=None, max_enqueued_batches: int = 64):
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay_ms / 1000.0
        self.enabled = enabled
        self.on_batch = on_batch or (lambda size: None)
        self.max_waiting_rows = max_enqueued_batches * max_batch_size
        self._waiting_rows = 0  # rows queued or waiting for a runner, not yet computing
        self._executor = ThreadPoolExecutor(max_workers=num_batch_threads, thread_name_prefix="onnx-batch")
        self._slots = asyncio.Semaphore(num_batch_threads)
        self._queue: deque[tuple[dict, asyncio.Future, float]] = deque()
        self._queued_rows = 0  # rows in _queue, kept as it changes (summing it per loop turn was O(queue))
        self._wakeup = asyncio.Event()
        self._collector: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()

    def start(self) -> None:
        if self.enabled and self._collector is None:
            self._collector = asyncio.get_running_loop().create_task(self._collect())

    def flush(self) -> None:
        """Shutting down: queued requests leave at once instead of waiting for company."""
        self.max_queue_delay = 0.0
        self._wakeup.set()

    async def stop(self) -> None:
        """Finish queued and running batches, then stop."""
        while self._queue or self._running:
            await asyncio.sleep(0.005)
        if self._collector:
            self._collector.cancel()
        self._executor.shutdown(wait=True)

    async def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Checked inputs (`serving.engine.validation.check_inputs`, run once by the request core) -> images,
        alone or in a batch (QueueFull when overloaded)."""
        rows = len(inputs["z"])
        if self._waiting_rows and self._waiting_rows + rows > self.max_waiting_rows:  # one big request always fits
            raise QueueFull(f"the server's batch queue is full ({self._waiting_rows} rows waiting); retry later")
        loop = asyncio.get_running_loop()
        # Alone: batching off, a full batch already, or (no batch timeout) a runner free with nobody
        # queued: the collector's hops would only add latency; requests arriving meanwhile queue and batch.
        idle = not self.max_queue_delay and not self._queue and not self._slots.locked()
        if not self.enabled or rows >= self.max_batch_size or idle:
            self._waiting_rows += rows
            try:
                await self._slots.acquire()  # cancelled here (client gone): nothing is computed
            finally:
                self._waiting_rows -= rows
            try:
                self.on_batch(rows)
                return await loop.run_in_executor(self._executor, self.model.run_checked, inputs)
            finally:
                self._slots.release()
        item = (inputs, loop.create_future(), time.monotonic())
        self._waiting_rows += rows
        self._queued_rows += rows
        self._queue.append(item)
        self._wakeup.set()
        try:
            return await item[1]
        except asyncio.CancelledError:  # the client has gone: leave the queue, so the rows are never computed
            for i, queued in enumerate(self._queue):  # by identity: items hold arrays, == would compare them
                if queued is item:
                    del self._queue[i]
                    self._waiting_rows -= rows
                    self._queued_rows -= rows
                    self._wakeup.set()  # the batch being formed may have lost its head
                    break
            raise

    async def _collect(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                # Wait for a free runner first: requests arriving meanwhile join the next batch, so
                # batches grow with load on their own and an idle server adds no delay.
                await self._slots.acquire()
                if not self._queue:  # every waiting client left meanwhile
                    self._slots.release()
                    break
                while self._queue and self._rows_queued() < self.max_batch_size:
                    left = self._queue[0][2] + self.max_queue_delay - time.monotonic()  # the head may have left
                    if left <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout=left)
                    except asyncio.TimeoutError:
                        break
                    self._wakeup.clear()
                task = asyncio.get_running_loop().create_task(self._run(self._take_batch()))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    def _rows_queued(self) -> int:
        return self._queued_rows

    def _take_batch(self):
        batch, rows = [], 0
        while self._queue and rows + len(self._queue[0][0]["z"]) <= self.max_batch_size:
            item = self._queue.popleft()
            size = len(item[0]["z"])
            self._waiting_rows -= size
            self._queued_rows -= size
            batch.append(item)
            rows += size
        return batch

    async def _run(self, batch) -> None:
        try:
            batch = [item for item in batch if not item[1].done()]  # clients that left while a runner was found
            if not batch:
                return
            merged = {k: np.concatenate([item[0][k] for item in batch]) for k in batch[0][0]}
            self.on_batch(len(merged["z"]))
            images = await asyncio.get_running_loop().run_in_executor(self._executor, self.model.run_checked, merged)
            start = 0
            for inputs, future, _ in batch:
                end = start + len(inputs["z"])
                if not future.done():
                    future.set_result(images[start:end])
                start = end
        except Exception as err:  # the model failed: every request in the batch gets the error
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(err)
        finally:
            self._slots.release()
