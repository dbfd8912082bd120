"""The blocking face of a server that runs on the process's background event loop.

:class:`ServerHandle` is what :func:`deconv_server.app.start_server` returns: tests and programs
that embed a server call its blocking methods (``stop``, ``drain``, ``wait_warm``) from any thread;
the work runs on :data:`LOOP`, the one event loop all servers of the process share (gRPC's asyncio
support keeps process-wide state and delivers completion events, a peer's cancel for one, to one
loop).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from deconv_server.config import ServerConfig, format_host
from deconv_server.metrics import Metrics
from deconv_server.servicer import DeconvServicer

__all__ = ["LINGER_S", "LOOP", "ServerHandle"]

#: Shortest time the drain answers UNAVAILABLE before stopping gRPC (see ServerHandle.drain).
LINGER_S = 0.2


@dataclass
class ServerHandle:
    """A started server whose event loop runs in a background thread; blocking methods.

    Attributes
    ----------
    port : int
        The bound port (the real one when the config asked for 0).
    config : ServerConfig
    servicer : DeconvServicer
    warm : threading.Event
        Set once the kernels are compiled and health reports SERVING.
    metrics : Metrics or None
        The server's metrics when ``config.metrics_port`` is set.
    metrics_port : int or None
        The bound port of the ``/metrics`` endpoint.
    """

    port: int
    config: ServerConfig
    servicer: DeconvServicer
    warm: threading.Event
    metrics: Metrics | None = None
    metrics_port: int | None = None
    _running: Any = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def target(self) -> str:
        """``host:port`` a local client can dial."""
        host = self.config.host
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{format_host(host)}:{self.port}"

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Block until SERVING (or ``timeout`` seconds); True when warm."""
        return self.warm.wait(timeout)

    def _run(self, coro: Any) -> threading.Event:
        assert self._loop is not None and self._running is not None
        if self._stopped.is_set():
            coro.close()
            return self._stopped
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.add_done_callback(lambda _: self._stopped.set())
        return self._stopped

    def stop(self, grace: float | None = None) -> threading.Event:
        """Report NOT_SERVING, reject new RPCs, give in-flight ones ``grace`` seconds.

        Returns
        -------
        threading.Event
            Set when the server has fully stopped.
        """
        assert self._running is not None
        return self._run(self._running.stop(grace))

    def drain(self, grace: float, linger: float = LINGER_S) -> threading.Event:
        """Shut down without losing a call; what :func:`serve` does on SIGTERM.

        Reports NOT_SERVING and answers new Deconv RPCs UNAVAILABLE (clients retry elsewhere),
        for at least ``linger`` seconds and until the admitted ones have finished (at most
        ``grace``), then stops gRPC with what remains of ``grace``.

        Returns
        -------
        threading.Event
            Set when the server has fully stopped.
        """
        assert self._running is not None
        return self._run(self._running.drain(grace, linger))


class _LoopThread:
    """The process's one event loop for servers started by :func:`start_server`.

    gRPC's asyncio support keeps process-wide state and delivers completion events (a peer's
    cancel, for one) to one loop, so every server of the process shares this loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="deconv-loop", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop





#: The process's event loop for servers (started on first use).
LOOP = _LoopThread()
