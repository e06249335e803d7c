"""Dask preload of a batch's local workers: Ctrl-C at the terminal reaches the whole process group, and it is the
batch (the client) that stops them, so the workers themselves ignore SIGINT and keep quiet about its going."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

#: What a worker logs (with a traceback) when its heartbeat finds the scheduler gone.
HEARTBEAT_LOST = "Failed to communicate with scheduler during heartbeat"


class SchedulerGone(logging.Filter):
    """Drops a local worker's heartbeat failure: the batch closes its scheduler before its workers when it stops
    (finished, Ctrl-C or SIGTERM), so a heartbeat in between finds no scheduler. That is the expected end, not an
    error for the user's terminal; a scheduler lost while jobs run is reported by the batch itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HEARTBEAT_LOST)


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in this worker process (its client closes it when the batch stops), and drop the heartbeat
    failure its closing may log (``SchedulerGone``)."""
    logging.getLogger("distributed.worker").addFilter(SchedulerGone())
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
