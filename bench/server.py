"""`stito bench server`: server_info round-trip latency and a match through the server vs in-process."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path


def run_server_bench(repeats: int = 200) -> int:
    """Start a private server on a free loopback port, time it, print figures; returns 0."""
    from stito_server.audio import Audio
    from stito_server.client import StitoClient
    from stito_server.effects.specs import load_chain
    from stito_server.engine.match import MatchOptions, match
    from stito_server.engine.optimize import OptimizerOptions
    from stito_server.examples import phrase, styled
    from stito_server.metrics import get_metric
    from stito_server.protocol import load_or_create_key
    from stito_server.server import Server, ServerOptions

    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "key"
        key = load_or_create_key(key_file)
        server = Server(ServerOptions(bind="tcp://127.0.0.1:0", key_file=key_file, quiet=True))
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            with StitoClient(server.address, key) as client:
                client.server_info()
                lat = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    client.server_info()
                    lat.append((time.perf_counter() - t0) * 1000)
                rate = 48000
                x = phrase(10.0, rate, seed=1)
                r = styled(phrase(10.0, rate, seed=2), rate)
                opts = {"popsize": 16, "max_generations": 5, "seed": 0}
                t0 = time.perf_counter()
                req = client.start_match(x, rate, r, rate, {"spec": "pedalboard-strip"}, opts)
                client.wait_match(req, idle_timeout_s=300)
                served = time.perf_counter() - t0
            t0 = time.perf_counter()
            match(Audio(x, rate), Audio(r, rate), load_chain("pedalboard-strip"), get_metric("mfcc"),
                  MatchOptions(optimizer=OptimizerOptions(popsize=16, max_generations=5, seed=0)))
            local = time.perf_counter() - t0
        finally:
            server.stop()
            thread.join(timeout=60)
    lat.sort()
    print(f"server_info round trip over {repeats} calls: median {statistics.median(lat):.2f} ms, "
          f"p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} ms (cores: {os.cpu_count()})")
    print(f"match, pedalboard-strip, 10 s input, popsize 16 x 5 generations: in-process {local:.2f} s, "
          f"through the server {served:.2f} s, ratio {served / local:.2f}x")
    return 0
