"""stito-server: the ZeroMQ style-transfer service (ROUTER socket, job queue, worker-process rendering)."""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import math
import queue
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import zmq
from zmq.utils import z85

from . import __version__
from .errors import CancelledError, JobStopped, ProtocolError, RequestError, StitoError
from .memory import fast_allocator, return_large_blocks, single_threaded_blas

single_threaded_blas()  # before numpy loads: a match is parallel over candidates itself (memory.py)
from .protocol import (DEFAULT_ADDRESS, MAX_BUFFER_BYTES, MAX_JSON_BYTES, PROTOCOL_VERSION, Message, ReplayGuard,
                       Signer, audio_to_buffer, buffer_to_audio, config_dir, deserialize, load_or_create_key,
                       new_message, secure_socket, serialize, split_identities)

if TYPE_CHECKING:
    from .engine.match import ParamChange

POLL_MS = 20
HEARTBEAT_MS = 2000  # ZMTP heartbeats: a client silent for 5 of these counts as gone
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks who may connect (RFC 27, ZAP)


@dataclass
class ServerOptions:
    """Settings of a server.

    Attributes:
        bind: ZeroMQ endpoint to bind.
        jobs: Matches run at once; more wait in a queue.
        device: "cpu" or "cuda" for the metric.
        workers: Render worker processes per job (default one per core).
        job_timeout_s: A match running longer is stopped with ``Timeout``.
        max_message_bytes: Largest accepted message (all buffers together).
        key_file: Signing key file (default the per-user one).
        quiet: No log lines on stderr.
        allow_python_effects: Accept chain specs naming ``python = "module:factory"`` effects (imports
            code named by a client; for tests and trusted setups only).
        max_popsize: Largest ``options.popsize`` a request may ask for (memory grows with it).
        max_generations: Largest ``options.max_generations``.
        max_audio_seconds: Longest input or reference, in seconds (memory grows with it).
        max_queued: Requests that may wait for a free slot; more are refused with ``Busy``.
        max_candidate_seconds: Most audio a candidate may be rendered on (``excerpts`` x ``excerpt_seconds``).
    """

    bind: str = DEFAULT_ADDRESS
    jobs: int = 1
    device: str = "cpu"
    workers: int | None = None
    job_timeout_s: float = 600.0
    max_message_bytes: int = MAX_BUFFER_BYTES
    key_file: Path | None = None
    quiet: bool = False
    allow_python_effects: bool = False
    max_popsize: int = 256
    max_generations: int = 500
    max_audio_seconds: float = 1800.0
    max_queued: int = 16
    max_candidate_seconds: float = 120.0


@dataclass
class Job:
    """A queued or running match."""

    job_id: str
    identities: list[bytes]
    request: Message
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = "Cancelled"
    state: str = "queued"
    deadline: float = 0.0


class Server:
    """Serves the protocol (docs/protocol.md) on a CURVE ROUTER socket. ``serve()`` runs until shutdown; ``stop()`` asks it to end.

    ZeroMQ sockets are used only from the thread running ``serve``; job threads hand their messages over
    through a queue.
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        check_bind(options.bind, options.key_file)
        if options.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {options.device!r}")
        if options.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("--gpu/--device cuda asked for CUDA, but torch sees no CUDA device; "
                                   "run with --device cpu")
        self.key_path = options.key_file or config_dir() / "key"
        self.signer = Signer(load_or_create_key(self.key_path, create=options.key_file is None))
        self.guard = ReplayGuard()
        self._ctx = zmq.Context()
        # CURVE (protocol 3.0): a peer without the key fails the handshake, before libzmq reads any of its frames;
        # the ZAP handler (``_authenticate``, answered from ``serve``) admits only the clients' derived key
        self._zap = self._ctx.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.bind(ZAP_ENDPOINT)
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._client_key = z85.decode(secure_socket(self._sock, self.signer.key, "server").client_public)
        # one frame above the limit is cut at its header, which declares its size (the peer is disconnected)
        self._sock.setsockopt(zmq.MAXMSGSIZE, options.max_message_bytes + (8 << 20))
        # a message to a peer that has gone (closed, or stopped answering the heartbeats) fails with EHOSTUNREACH
        # instead of vanishing: its jobs are then cancelled, no one is left to take their results (``_flush``)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        self._sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5 * HEARTBEAT_MS)
        self._sock.bind(options.bind)
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._outbox: queue.Queue[tuple[list[bytes], Message]] = queue.Queue()
        self._pool = ThreadPoolExecutor(options.jobs, thread_name_prefix="stito-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._metrics: dict[str, Any] = {}
        self.render_pids: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask ``serve`` to finish (safe from any thread or a signal handler)."""
        self._stop.set()

    def log(self, text: str) -> None:
        if not self.options.quiet:
            print(f"stito-server: {text}", file=sys.stderr, flush=True)

    def serve(self) -> None:
        """Answer messages until ``stop()`` or a shutdown_request; then end every job and close."""
        self.log(f"{__version__} listening on {self.address} (protocol {PROTOCOL_VERSION}, key {self.key_path}, "
                 f"{self.options.jobs} concurrent job(s), device {self.options.device})")
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._zap, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(POLL_MS))
                if self._zap in ready:
                    self._authenticate()
                if self._sock in ready:
                    self._receive()
                self._flush()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.reason = "ServerShutdown"
            job.cancel.set()
        self._pool.shutdown(wait=True)  # running jobs stop within one candidate's render, queued ones at once
        self._flush()
        self._sock.close(0)
        self._zap.close(0)
        self._ctx.term()
        self.log("stopped")

    def _flush(self) -> None:
        while True:
            try:
                identities, msg = self._outbox.get_nowait()
            except queue.Empty:
                return
            try:
                self._sock.send_multipart(identities + serialize(msg, self.signer), copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                continue  # the peer reads too slowly (its queue is full): this message is dropped, as before
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self._peer_gone(identities[0] if identities else b"")

    def _send(self, identities: list[bytes], msg: Message) -> None:
        self._outbox.put((identities, msg))

    # -- receiving -----------------------------------------------------------------------------------
    def _authenticate(self) -> None:
        """Answer one ZAP request: admit a CURVE client whose public key is the one derived from the shared key."""
        frames = self._zap.recv_multipart()
        request_id = frames[1] if len(frames) > 1 else b""
        ok = (len(frames) >= 7 and frames[0] == b"1.0" and frames[5] == b"CURVE"
              and hmac.compare_digest(frames[6], self._client_key))
        self._zap.send_multipart([b"1.0", request_id, b"200" if ok else b"400",
                                  b"OK" if ok else b"not the shared key's client", b"", b""])
        if not ok:
            address = frames[3].decode("utf-8", "replace") if len(frames) > 3 else "?"
            self.log(f"refused a connection from {address}: its key is not this server's")

    def _receive(self) -> None:
        try:
            frames = self._sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        peer = frames[-1].get("Peer-Address") if frames else None
        raw = [f.bytes for f in frames]
        try:
            identities, rest = split_identities(raw)
        except ProtocolError:
            return  # nowhere sensible to answer: drop
        if not identities:
            return
        try:
            msg = deserialize(rest, self.signer, self.guard, self.options.max_message_bytes)
        except ProtocolError as exc:
            self._send(identities, new_message("error_reply", _error(exc.ename, exc.evalue), parent=_claimed(rest)))
            return
        try:
            self._dispatch(identities, msg, peer)
        except Exception as exc:  # a bad request must never take the server down
            self._send(identities, new_message("error_reply", _error("InternalError", str(exc)), parent=msg))

    def _peer_gone(self, identity: bytes) -> None:
        """Cancel every job of a client that disconnected (running ones stop within one candidate's render): found when
        a message to it (a job's progress, each generation) cannot be delivered."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.identities and j.identities[0] == identity]
        for job in jobs:
            job.reason = "ClientGone"
            job.cancel.set()
        if jobs:
            self.log(f"client gone: cancelled job(s) {', '.join(j.job_id for j in jobs)}")

    def _dispatch(self, identities: list[bytes], msg: Message, peer: str | None) -> None:
        kind = msg.msg_type
        if kind == "server_info_request":
            self._send(identities, new_message("server_info_reply", self.info(), parent=msg))
        elif kind == "list_plugins_request":
            self._send(identities, new_message("list_plugins_reply", list_plugins(), parent=msg))
        elif kind == "match_request":
            self._submit(identities, msg)
        elif kind == "cancel_request":
            job_id = str(msg.content.get("job_id", ""))
            with self._lock:
                job = self._jobs.get(job_id)
            if job is None:
                content = _error("UnknownJob", f"no running or queued job {job_id!r}")
            else:
                job.reason = "Cancelled"
                job.cancel.set()
                content = {"status": "ok", "job_id": job_id, "state": job.state}
            self._send(identities, new_message("cancel_reply", content, parent=msg))
        elif kind == "shutdown_request":
            if not _is_loopback(peer):
                self._send(identities, new_message("shutdown_reply", _error(
                    "NotAllowed", f"shutdown is accepted only from this machine, not from {peer}"), parent=msg))
                return
            self._send(identities, new_message("shutdown_reply", {"status": "ok"}, parent=msg))
            self.stop()
        else:
            self._send(identities, new_message("error_reply", _error(
                "UnknownType", f"unknown msg_type {kind!r}; known: server_info_request, list_plugins_request, "
                "match_request, cancel_request, shutdown_request"), parent=msg))

    def info(self) -> dict[str, Any]:
        from .effects.vst3 import vst3_search_paths
        from .metrics import DEFAULT_METRIC, metric_names

        with self._lock:
            running = sum(j.state == "running" for j in self._jobs.values())
            queued = sum(j.state == "queued" for j in self._jobs.values())
        return {"status": "ok", "protocol_version": PROTOCOL_VERSION, "server_version": __version__,
                "device": self.options.device, "metrics": metric_names(), "metric": DEFAULT_METRIC,
                "jobs": {"running": running, "queued": queued, "max_concurrent": self.options.jobs},
                "vst3_paths": [str(p) for p in vst3_search_paths()]}

    # -- jobs ------------------------------------------------------------------------------------------
    def _submit(self, identities: list[bytes], msg: Message) -> None:
        job = Job(uuid.uuid4().hex[:12], identities, msg)
        with self._lock:
            waiting = sum(j.state == "queued" and not j.cancel.is_set() for j in self._jobs.values())
            busy = sum(j.state == "running" for j in self._jobs.values()) >= self.options.jobs
            full = busy and waiting >= self.options.max_queued
            if not full:
                self._jobs[job.job_id] = job
            position = waiting + busy
        if full:
            self._reply_error(job, "Busy", f"the server's queue is full ({waiting} requests waiting, at most "
                                           f"{self.options.max_queued}); try again when a match has finished")
            return
        self._progress(job, {"state": "queued", "queue_position": int(position)})
        self._pool.submit(self._run, job)

    def _progress(self, job: Job, content: dict[str, Any]) -> None:
        self._send(job.identities, new_message("progress", {"job_id": job.job_id, **content}, parent=job.request))

    def _run(self, job: Job) -> None:
        try:
            if job.cancel.is_set():
                raise JobStopped(job.reason)
            job.state = "running"
            job.deadline = time.monotonic() + self._timeout_s(job.request.content.get("options", {}))
            self._progress(job, {"state": "running", "queue_position": 0})
            content, buffers = self._match(job)
            self._send(job.identities, new_message("match_reply", content, parent=job.request, buffers=buffers))
            self.log(f"job {job.job_id} done")
        except Exception as exc:
            ename, evalue, extra = _classify(exc)
            self._reply_error(job, ename, evalue, extra)
        finally:
            with self._lock:
                self._jobs.pop(job.job_id, None)

    def _reply_error(self, job: Job, ename: str, evalue: str, extra: dict[str, Any] | None = None) -> None:
        self.log(f"job {job.job_id} failed: {ename}: {evalue}")
        content = {**_error(ename, evalue), "job_id": job.job_id, **(extra or {})}
        self._send(job.identities, new_message("match_reply", content, parent=job.request))

    def _timeout_s(self, options: Any) -> float:
        """A request's ``options.timeout_s``, at most the server's ``--timeout`` (also its default); BadRequest
        naming it when it is not a finite number of seconds above 0."""
        value = options.get("timeout_s") if isinstance(options, dict) else None
        if value is None:
            return self.options.job_timeout_s
        try:
            seconds = float(value)
        except (TypeError, ValueError, OverflowError):
            seconds = float("nan")
        if isinstance(value, bool) or not (math.isfinite(seconds) and seconds > 0):
            raise RequestError("BadRequest", f"options.timeout_s must be a number of seconds above 0, got {value!r}")
        return min(seconds, self.options.job_timeout_s)  # the server's limit is the ceiling

    def metric(self, name: str):
        """One metric object per name, shared by every job (learned encoders load once)."""
        from .metrics import get_metric, metric_names

        # registered names, or a blend of them ("afx+mfcc"); no "afx:PATH" over the wire: a request never picks
        # files to load
        if not all(part in metric_names() for part in name.split("+")):
            raise RequestError("BadRequest", f"unknown metric {name!r}; valid: {', '.join(metric_names())}, "
                                             "or names joined by '+' (e.g. afx+mfcc)")
        with self._lock:
            if name not in self._metrics:
                self._metrics[name] = get_metric(name, self.options.device)
            return self._metrics[name]

    def _match(self, job: Job) -> tuple[dict[str, Any], list[bytes]]:
        from .audio import Audio
        from .engine.match import MatchOptions, match  # the engine (pedalboard, scipy) loads with the first match
        from .engine.options import option_values, wire_changes

        c = job.request.content
        x, x_rate = buffer_to_audio(_obj(c, "input"), job.request.buffers)  # a ProtocolError replies by its name
        given = c.get("reference")  # one {"buffer": ...} object, or a list of them (3.2: several references)
        if isinstance(given, list) and given and all(isinstance(g, dict) for g in given):
            refs = [buffer_to_audio(g, job.request.buffers) for g in given]
        else:
            refs = [buffer_to_audio(_obj(c, "reference"), job.request.buffers)]
        from .audio import validate_audio

        validate_audio(Audio(x, x_rate), role="input")  # fail fast, before any plugin loads
        for i, (r, r_rate) in enumerate(refs):
            validate_audio(Audio(r, r_rate), role="reference" if len(refs) == 1 else f"reference {i + 1}")
        for role, n, rate in (("input", x.shape[-1], x_rate),
                              *((f"reference {i + 1}" if len(refs) > 1 else "reference", r.shape[-1], r_rate)
                                for i, (r, r_rate) in enumerate(refs))):
            if n / rate > self.options.max_audio_seconds:
                raise RequestError("BadRequest", f"the {role} is {n / rate:.0f} s long; this server takes at most "
                                                 f"{self.options.max_audio_seconds:.0f} s")
        from .effects.chain import STREAM_ABOVE

        if max(a.shape[-1] for a in (x, *(r for r, _ in refs))) > STREAM_ABOVE:
            return_large_blocks()  # a long file's peak memory is its arrays', not the allocator's leftovers
        o = c.get("options", {})
        if not isinstance(o, dict):
            raise RequestError("BadRequest", f"options must be an object, got {type(o).__name__}")
        built = build_chain(_obj(c, "chain"), self.options.allow_python_effects)
        try:
            # options not given take the preset's values ("fast" unless the request names "paper")
            opts = MatchOptions.preset(
                str(o.get("preset", "fast")), workers=self.options.workers,
                renderer="processes" if built.chain.spec is not None else "threads", **wire_changes(o))
        except (TypeError, ValueError, StitoError) as exc:
            raise RequestError("BadRequest", f"bad options: {exc}") from None
        for name, value, cap in (("popsize", opts.optimizer.popsize, self.options.max_popsize),
                                 ("max_generations", opts.optimizer.max_generations, self.options.max_generations)):
            if value > cap:
                raise RequestError("BadRequest", f"options.{name} must be at most {cap} on this server, got {value}")
        per_candidate = opts.excerpts * opts.excerpt_seconds
        if per_candidate > self.options.max_candidate_seconds:
            raise RequestError("BadRequest", f"options.excerpts x options.excerpt_seconds must be at most "
                                             f"{self.options.max_candidate_seconds:g} s of audio per candidate on this "
                                             f"server, got {opts.excerpts} x {opts.excerpt_seconds:g} s")
        from .metrics import DEFAULT_METRIC

        metric = self.metric(str(o.get("metric", DEFAULT_METRIC)))

        def progress(p) -> None:
            self._progress(job, {"state": "running", "generation": p.generation,
                                 "max_generations": p.max_generations, "evaluations": p.evaluations,
                                 "best_similarity": p.best_similarity, "elapsed_s": p.elapsed_s})

        def cancelled() -> bool:
            if time.monotonic() > job.deadline:
                job.reason = "Timeout"
                return True
            return job.cancel.is_set()

        try:
            references = [Audio(r, r_rate) for r, r_rate in refs]
            result = match(Audio(x, x_rate), references[0] if len(references) == 1 else references, built.chain,
                           metric, opts, progress, cancelled)
        except CancelledError:
            raise JobStopped(job.reason) from None
        content = {"status": "ok", "job_id": job.job_id, "fx": built.reply_fx(result.parameters),
                   "similarity": result.similarity, "skipped": built.skipped, "unmapped": built.unmapped,
                   "report": result.report(chain_name=built.chain.name, metric=metric.name,
                                           options=option_values(opts, wire_only=True))}
        buffers: list[bytes] = []
        if c.get("return_audio", False):
            meta, data = audio_to_buffer(result.output, result.sample_rate)
            content["output"] = {"buffer": 0, **meta}
            buffers.append(data)
        return content, buffers


@dataclass
class BuiltChain:
    """A chain for a request plus the map from its effects/parameters to the request's own indices."""

    chain: Any
    fx_index: list[int]
    param_index: list[dict[int, int]] | None
    skipped: list[dict[str, Any]] = field(default_factory=list)
    unmapped: list[dict[str, Any]] = field(default_factory=list)

    def reply_fx(self, parameters: list[ParamChange]) -> list[dict[str, Any]]:
        """Per FX, every mapped parameter's new normalized value and text, in the request's indices."""
        out: dict[int, dict[str, Any]] = {}
        counters: dict[str, int] = {}
        effect_of = {fx.name: e for e, fx in enumerate(self.chain.effects)}
        for row in parameters:
            e = effect_of[row.effect]
            i = counters.get(row.effect, 0)
            counters[row.effect] = i + 1
            index = i if self.param_index is None else self.param_index[e].get(i)
            if index is None:
                continue
            fx = out.setdefault(e, {"index": self.fx_index[e], "name": row.effect, "params": []})
            fx["params"].append({"index": index, "name": row.param, "value": row.normalized_after,
                                 "before": row.normalized_before, "text": row.after_text,
                                 "before_text": row.before_text, "unit": row.unit,
                                 "changed": row.changed, "searched": row.searched})
        return [out[e] for e in sorted(out)]


def build_chain(desc: dict[str, Any], allow_python: bool = False) -> BuiltChain:
    """A request's ``chain`` ({"spec": name or spec object} or {"fx": [...]}) -> BuiltChain."""
    from .effects.specs import chain_from_dict, load_chain, python_effects
    from .reaper_chain import chain_from_reaper

    if "fx" in desc:
        rc = chain_from_reaper(desc["fx"])
        return BuiltChain(rc.chain, rc.fx_index, rc.param_index, rc.skipped, rc.unmapped)
    spec = desc.get("spec")
    if isinstance(spec, str):
        chain = load_chain(spec) if "/" not in spec and not spec.endswith(".toml") else None
        if chain is None:
            raise RequestError("BadRequest", "chain.spec must be a shipped chain name or a spec object, "
                                              "not a file path on the server")
    elif isinstance(spec, dict):
        effects = spec.get("effects") if isinstance(spec.get("effects"), list) else []
        if not allow_python and python_effects(spec):
            raise RequestError("NotAllowed", "this server does not load Python effects named by clients")
        paths = [str(e["vst3"]) for e in effects if isinstance(e, dict) and isinstance(e.get("vst3"), str)
                 and ("/" in e["vst3"] or "\\" in e["vst3"] or e["vst3"].lower().endswith(".vst3"))]
        if paths:
            raise RequestError("NotAllowed", f"this server loads plugins by name from its own VST3 paths, not from "
                                             f"a path a client names: {paths[0]!r}")
        chain = chain_from_dict(spec)
    else:
        raise RequestError("BadRequest", "chain must be {\"spec\": name or object} or {\"fx\": [...]}")
    return BuiltChain(chain, list(range(len(chain.effects))), None)


def _claimed(frames: list[bytes]) -> Message | None:
    """The header a refused message claims (msg_id, msg_type, session; unverified), so that the refusal reaches
    the request it answers: only a peer holding the key gets past the CURVE handshake to send one."""
    if len(frames) < 3 or len(frames[2]) > MAX_JSON_BYTES:
        return None
    try:
        header = json.loads(bytes(frames[2]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    return Message({k: str(header[k])[:128] for k in ("msg_id", "msg_type", "session") if k in header})


def _obj(content: dict[str, Any], key: str) -> dict[str, Any]:
    value = content.get(key)
    if not isinstance(value, dict):
        raise RequestError("BadRequest", f"match_request needs an object {key!r}")
    return value


def _classify(exc: Exception) -> tuple[str, str, dict[str, Any]]:
    """An exception -> the reply's ``ename``, ``evalue`` and extra fields: a StitoError by its wire name."""
    if isinstance(exc, StitoError):
        return exc.wire_name, exc.evalue, exc.wire_extra()
    return "InternalError", f"{type(exc).__name__}: {' '.join(str(exc).split())}", {}


def _error(ename: str, evalue: str) -> dict[str, Any]:
    return {"status": "error", "ename": ename, "evalue": evalue}


def _is_loopback(peer: str | None) -> bool:
    if not peer:
        return True  # ipc:// and inproc:// have no peer address: same machine
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, key_file: Path | None) -> None:
    """Refuse a bind that can be reached from other machines unless an explicit key file is configured.

    Local without a key: ``tcp://`` on a loopback address or localhost, ``ipc://`` and ``inproc://``; any other
    transport (``tipc://``, ``ws://``, ``udp://``, ``pgm://`` ...) needs the key, as a non-loopback TCP bind does.

    Raises:
        ValueError: with the reason and what to do.
    """
    if bind.startswith(("ipc://", "inproc://")):
        return
    if not bind.startswith("tcp://"):
        if key_file is None:
            raise ValueError(f"--bind {bind}: only tcp:// on a loopback address, ipc:// and inproc:// stay on this "
                             "machine; give --key-file KEY (copied to the clients, mode 0600) to bind another "
                             "transport")
        return
    host, _, port = bind[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    if port != "*" and not (port.isdigit() and 0 <= int(port) <= 65535):
        raise ValueError(f"--bind {bind}: the port must be 0-65535 (0 or * picks a free one), got {port!r}")
    if host in ("localhost",):
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and key_file is None:
        raise ValueError(f"--bind {bind} listens beyond this machine; give --key-file KEY (copied to the "
                         "clients, mode 0600) to allow it, or bind 127.0.0.1")


def list_plugins() -> dict[str, Any]:
    from .effects.builtin import BUILTINS
    from .effects.vst3 import find_vst3

    return {"status": "ok", "plugins": [{"name": n, "path": str(p)} for n, p in find_vst3().items()],
            "builtins": [{"name": n, "description": s.description} for n, s in BUILTINS.items()]}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stito-server", description="stito style-transfer server (ZeroMQ).")
    p.add_argument("--bind", default=DEFAULT_ADDRESS, help="endpoint to bind (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="matches run at once; more are queued (default: 1)")
    p.add_argument("--gpu", action="store_true", help="run the metric on CUDA (same as --device cuda)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--workers", type=int, default=None, help="render processes per job (default: one per core)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-job time limit in seconds (default: 600)")
    p.add_argument("--max-message-mb", type=int, default=MAX_BUFFER_BYTES >> 20)
    d = ServerOptions()
    p.add_argument("--max-popsize", type=int, default=d.max_popsize,
                   help="largest popsize a request may ask for (default: %(default)s)")
    p.add_argument("--max-generations", type=int, default=d.max_generations,
                   help="most generations a request may ask for (default: %(default)s)")
    p.add_argument("--max-audio-minutes", type=float, default=d.max_audio_seconds / 60,
                   help="longest input or reference, in minutes (default: %(default)g)")
    p.add_argument("--max-queued", type=int, default=d.max_queued,
                   help="requests that may wait for a free slot; more are refused with Busy (default: %(default)s)")
    p.add_argument("--key-file", type=Path, default=None,
                   help="signing key (default: ~/.config/stito/key, created on first start)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    fast_allocator()  # until a long file comes (_match): then return_large_blocks, for good
    for flag, value in (("--timeout", args.timeout), ("--max-audio-minutes", args.max_audio_minutes)):
        if not (math.isfinite(value) and value > 0):
            parser.error(f"{flag} must be a number above 0, got {value:g}")
    for flag, count in (("--max-popsize", args.max_popsize), ("--max-generations", args.max_generations),
                        ("--max-queued", args.max_queued), ("--max-message-mb", args.max_message_mb),
                        ("--workers", 1 if args.workers is None else args.workers), ("--jobs", args.jobs)):
        if count < 1:
            parser.error(f"{flag} must be at least 1, got {count}")
    opts = ServerOptions(bind=args.bind, jobs=max(1, args.jobs), device="cuda" if args.gpu else args.device,
                         workers=args.workers, job_timeout_s=args.timeout,
                         max_message_bytes=args.max_message_mb << 20, key_file=args.key_file, quiet=args.quiet,
                         max_popsize=args.max_popsize, max_generations=args.max_generations,
                         max_audio_seconds=args.max_audio_minutes * 60, max_queued=args.max_queued)
    try:
        server = Server(opts)
    except (ValueError, RuntimeError, PermissionError, FileNotFoundError, zmq.ZMQError) as exc:
        print(f"stito-server: error: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
