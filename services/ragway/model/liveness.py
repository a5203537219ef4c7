"""Engine liveness: notice at once when the engine can no longer serve, so the service stops
claiming it can and its supervisor (Kubernetes, `ragway up`) starts a fresh one.

vLLM marks its engine dead (`AsyncLLM.errored`, then `EngineDeadError` to every request) when the
engine-core process exits, or when a step outlives `VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS` under its
multiprocess executor. It offers no callback for either, so `EngineWatch` polls the flag. With one
worker (the CPU build, a single GPU) the engine core runs the model in its own process and has no
step timeout: a step that never returns would hold every request forever. So the watch also calls
the engine stalled when requests are in flight and none of them got an output for `step_timeout`
seconds, the same bound vLLM puts on a step.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `ragway up` reads ENGINE_FAILED_EXIT without importing the engine
    from ragway.model.engine import BaseEngine

POLL_SECONDS = 0.1  # how soon a death is noticed; a flag read costs nothing
ENGINE_FAILED_EXIT = 3  # the model service's exit code when its engine failed: restart it


class EngineWatch:
    """Waits for the engine to die or stall; the servicer reports each output with `progress()`."""

    def __init__(self, engine: BaseEngine, step_timeout: float, poll: float = POLL_SECONDS) -> None:
        self.engine = engine
        self.step_timeout = step_timeout
        self.poll = poll
        self._last_progress = time.monotonic()

    def progress(self) -> None:
        """An output came out of the engine: it is still stepping."""
        self._last_progress = time.monotonic()

    async def failure(self) -> str:
        """Return, once the (ready) engine can no longer serve, why."""
        self._last_progress = time.monotonic()  # the clock starts when the engine does, not before
        while True:
            await asyncio.sleep(self.poll)
            if self.engine.dead:
                return "the engine core died (vLLM EngineDeadError)"
            now = time.monotonic()
            unfinished = self.engine.num_unfinished_requests()
            if unfinished == 0:
                # Idle is not stalled: the clock starts with the first request after a quiet spell.
                self._last_progress = now
            elif now - self._last_progress > self.step_timeout:
                return (
                    f"no engine step finished in {now - self._last_progress:.0f} s "
                    f"with {unfinished} requests in flight (step timeout {self.step_timeout:.0f} s)"
                )
