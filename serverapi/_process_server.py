"""ProcessAPIServer: ThreadedAPIServer's API, serving from worker processes on every core."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ._callback_reference import WORKER_ENVIRONMENT, CallbackReference
from ._config import DEFAULTS, ServerConfig, ValidityCallback
from ._process_service import ProcessService, check_for_workers
from ._threaded import ThreadedAPIServer


class ProcessAPIServer(ThreadedAPIServer):
    """A login-protected JSON API server whose connections are served by worker processes.

    The main process listens, owns the sessions and runs C{session_validity_callback} (on its
    reactor thread); each worker runs the HTTP layer and a pool of C{max_threads} threads for
    C{request_callback}, which must therefore be importable: a module-level function, or
    C{"package.module:name"}.  A worker that dies is replaced; its connections are lost, no
    session is.
    """

    def __init__(
        self,
        host: str,
        port: int,
        credentials: Mapping[str, str],
        request_callback: Callable[[str, str, dict[str, Any]], Any] | str,
        session_validity_callback: ValidityCallback | None = None,
        login_cookie_level: str = DEFAULTS["login_cookie_level"],
        logger: logging.Logger | None = None,
        timeout: float = DEFAULTS["timeout"],
        max_recv_calls_per_request: int = DEFAULTS["max_recv_calls_per_request"],
        *,
        workers: int | None = None,
        **options: Any,
    ) -> None:
        """ThreadedAPIServer's arguments, plus C{workers} (default: the number of CPUs)."""
        if os.environ.get(WORKER_ENVIRONMENT):
            raise RuntimeError("a ProcessAPIServer was created inside one of its own worker "
                               "processes: create and start it under "
                               "'if __name__ == \"__main__\":'")
        callback, self._callback = CallbackReference.of(request_callback)
        super().__init__(host, port, credentials, callback, session_validity_callback,
                         login_cookie_level, logger, timeout, max_recv_calls_per_request,
                         **options)
        self.workers = check_for_workers(self._config,
                                         os.cpu_count() or 1 if workers is None else workers)

    def _make_service(self, config: ServerConfig, reactor: Any) -> ProcessService:
        """The main process's service."""
        return ProcessService(config, reactor, workers=self.workers, callback=self._callback)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now (empty when the server is stopped)."""
        return self._on_reactor(lambda service: service.worker_pids(), [])
