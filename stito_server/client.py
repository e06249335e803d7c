"""DEALER client of stito-server (numpy + pyzmq only, so REAPER's Python can load it)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import numpy as np
import zmq

from .errors import ProtocolError, ServerError, ServerTimeout, StitoError
from .protocol import (DEFAULT_ADDRESS, PROTOCOL_VERSION, Message, ReplayGuard, Signer, audio_to_buffer,
                       buffer_to_audio, config_dir, deserialize, load_or_create_key, new_message, secure_socket,
                       serialize)

HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class StitoClient:
    """Talks to stito-server: signs requests, waits with timeouts, streams match progress.

    Every receive polls with a timeout; nothing blocks forever.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, key: bytes | None = None, timeout_s: float = 10.0) -> None:
        """Connect (ZeroMQ connects lazily: a missing server shows up as a timeout).

        Args:
            address: Server endpoint, e.g. "tcp://127.0.0.1:5557".
            key: Signing key; default the per-user key file (which must exist).
            timeout_s: Default wait for a reply, in seconds.
        """
        self.address, self.timeout_s = address, timeout_s
        self.signer = Signer(key if key is not None else load_or_create_key(create=False))
        self.key_source = "the key this client was given" if key is not None else f"the key here ({config_dir() / 'key'})"
        self.guard = ReplayGuard()
        self.session = uuid.uuid4().hex
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # a send waits at most the reply timeout (an address that never answers a connect would block it for good)
        self._sock.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
        secure_socket(self._sock, self.signer.key, "client")
        # a server holding another key (or none, or an older protocol) fails the CURVE handshake: said at once
        self._monitor = self._sock.get_monitor_socket(HANDSHAKE_FAILED)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        try:
            self._sock.connect(address)
        except zmq.ZMQError as exc:
            self.close()
            raise StitoError(f"cannot connect to {address!r} ({exc}); a server address looks like "
                             f"{DEFAULT_ADDRESS}") from None
        self._pending: list[Message] = []

    def close(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)
        self._ctx.term()

    def __enter__(self) -> "StitoClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, msg_type: str, content: dict[str, Any] | None = None, buffers: list[bytes] | None = None) -> Message:
        """Send a request without waiting; returns the message sent (its msg_id identifies the replies)."""
        msg = new_message(msg_type, content, buffers=buffers, session=self.session)
        try:
            self._sock.send_multipart(serialize(msg, self.signer), copy=False)
        except zmq.Again:
            raise ServerTimeout(f"could not send to {self.address} within {self.timeout_s:g} s (no connection); "
                                "is stito-server running there? Start it with `stito-server`.") from None
        return msg

    def poll(self, timeout_s: float = 0.0) -> list[Message]:
        """Every message that arrives within ``timeout_s`` (0: only those already here). Never blocks longer."""
        out, self._pending = self._pending, []
        deadline = time.monotonic() + timeout_s
        while True:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000)) if not out else 0
            ready = dict(self._poller.poll(wait_ms))
            if self._monitor in ready:
                self._monitor.recv_multipart()
                raise ServerError("BadKey", f"the server at {self.address} answered but refused this client's "
                                  f"key at the handshake: {self.key_source} is not the server's "
                                  "(its --key-file) — copy the server's key file to this machine — or the server "
                                  f"speaks another protocol than {PROTOCOL_VERSION} (update both)")
            if self._sock not in ready:
                return out
            frames = self._sock.recv_multipart()
            try:
                out.append(deserialize(frames, self.signer, self.guard))
            except ProtocolError:
                continue  # a reply we cannot verify is dropped

    def wait_for(self, request: Message, types: tuple[str, ...], timeout_s: float | None = None) -> Message:
        """Wait for the first reply to ``request`` whose type is in ``types`` (others are kept for poll).

        Raises:
            ServerTimeout: nothing within the timeout.
        """
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerTimeout(f"no reply from {self.address} within {timeout_s or self.timeout_s:g} s; "
                                    "is stito-server running? Start it with `stito-server`.")
            keep = []
            found = None
            for m in self.poll(min(left, 0.2)):
                if found is None and m.parent_header.get("msg_id") == request.msg_id and m.msg_type in types:
                    found = m
                else:
                    keep.append(m)
            self._pending = keep + self._pending
            if found is not None:
                return found

    def request(self, msg_type: str, content: dict[str, Any] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        """Send a request and return its reply's content; raises ServerError on ``status: error``."""
        req = self.send(msg_type, content)
        reply = self.wait_for(req, (msg_type.replace("_request", "_reply"), "error_reply"), timeout_s)
        return _checked(reply.content)

    def server_info(self, timeout_s: float | None = None) -> dict[str, Any]:
        return self.request("server_info_request", timeout_s=timeout_s)

    def list_plugins(self) -> dict[str, Any]:
        return self.request("list_plugins_request")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("cancel_request", {"job_id": job_id})

    def shutdown(self) -> dict[str, Any]:
        return self.request("shutdown_request")

    def start_match(self, input_audio: np.ndarray, input_rate: int, reference: np.ndarray | list[np.ndarray],
                    reference_rate: int | list[int], chain: dict[str, Any], options: dict[str, Any] | None = None,
                    return_audio: bool = False) -> Message:
        """Send a match_request; returns it (follow it with ``poll``/``wait_match``).

        ``reference`` may be several arrays (with a rate each, or one for all): up to 3, each from another
        recording processed alike (protocol 3.2).
        """
        m_in, b_in = audio_to_buffer(input_audio, input_rate)
        refs = reference if isinstance(reference, list) else [reference]
        rates = reference_rate if isinstance(reference_rate, list) else [reference_rate] * len(refs)
        described, buffers = [], [b_in]
        for r, rate in zip(refs, rates):
            meta, buf = audio_to_buffer(r, rate)
            described.append({"buffer": len(buffers), **meta})
            buffers.append(buf)
        content = {"input": {"buffer": 0, **m_in}, "reference": described[0] if len(described) == 1 else described,
                   "chain": chain, "options": options or {}, "return_audio": return_audio}
        return self.send("match_request", content, buffers)

    def wait_match(self, request: Message, on_progress: Callable[[dict[str, Any]], None] | None = None,
                   idle_timeout_s: float = 60.0) -> Message:
        """Follow a match: call ``on_progress`` for each progress message, return the match_reply.

        Raises:
            ServerTimeout: no message about the job for ``idle_timeout_s``.
            ServerError: the match failed (content has details, e.g. ``unsupported``).
        """
        while True:
            msg = self.wait_for(request, ("progress", "match_reply", "error_reply"), idle_timeout_s)
            if msg.msg_type == "progress":
                if on_progress is not None:
                    on_progress(msg.content)
                continue
            _checked(msg.content)
            return msg

    @staticmethod
    def output_audio(reply: Message) -> tuple[np.ndarray, int]:
        """The rendered output of a match_reply sent with ``return_audio``."""
        return buffer_to_audio(reply.content["output"], reply.buffers)


def _checked(content: dict[str, Any]) -> dict[str, Any]:
    if content.get("status") != "ok":
        raise ServerError(str(content.get("ename", "Error")), str(content.get("evalue", "unknown error")), content)
    return content

