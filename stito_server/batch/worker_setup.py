"""Dask preload of a batch's local workers: Ctrl-C at the terminal reaches the whole process group, and it is the
batch (the client) that stops them, so the workers themselves ignore SIGINT."""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in this worker process (its client closes it when the batch stops)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
