"""Wire protocol v3 of stito-server: signed multipart ZeroMQ messages over CURVE (stdlib + numpy; pyzmq only to set up a socket).

See docs/protocol.md. A message on the wire (after any ROUTER identity frames) is::

    [b"<IDS|MSG>", signature, header, parent_header, content, buffer_0, buffer_1, ...]

header/parent_header/content are UTF-8 JSON objects; signature is the hex HMAC-SHA256 over the four
frames header, parent_header, content and every buffer, in order, with the user's key. The connection itself
is CURVE-encrypted with key pairs derived from the same key (``secure_socket``): a peer without the key never
gets past the handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ProtocolError

PROTOCOL_VERSION = "3.4"
DELIMITER = b"<IDS|MSG>"
MAX_JSON_BYTES = 1 << 20  # header, parent header and content each
MAX_BUFFER_BYTES = 1 << 30  # all buffers of one message together (about 46 min of 48 kHz stereo float32)
MAX_BUFFERS = 4
REPLAY_WINDOW_S = 300.0  # messages older (or further in the future) than this are refused
DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"

REQUEST_TYPES = ("server_info_request", "list_plugins_request", "match_request", "cancel_request",
                 "shutdown_request")
REPLY_TYPES = ("server_info_reply", "list_plugins_reply", "match_reply", "cancel_reply", "shutdown_reply",
               "progress", "error_reply")


@dataclass
class Message:
    """One protocol message.

    Attributes:
        header: msg_id, msg_type, version, date, session.
        parent_header: The header of the request this answers ({} for requests).
        content: JSON object.
        buffers: Binary frames (audio), referenced from ``content`` by index.
    """

    header: dict[str, Any]
    parent_header: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))

    @property
    def msg_id(self) -> str:
        return str(self.header.get("msg_id", ""))


def new_message(msg_type: str, content: dict[str, Any] | None = None, parent: Message | None = None,
                buffers: list[bytes] | None = None, session: str = "") -> Message:
    """Build a message with a fresh header (uuid msg_id, UTC ISO date, this protocol version)."""
    header = {
        "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "version": PROTOCOL_VERSION,
        "date": datetime.now(timezone.utc).isoformat(), "session": session,
    }
    return Message(header, dict(parent.header) if parent else {}, content or {}, list(buffers or []))


class Signer:
    """HMAC-SHA256 signing and checking with the user's key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an empty key would leave messages unsigned; give the key from the key file")
        self.key = key

    def sign(self, frames: list[bytes]) -> bytes:
        """Lowercase hex HMAC-SHA256 over each frame's length (8 bytes, big-endian) and bytes, in order: moving
        bytes from one frame to the next changes the signature (protocol 2.0; 1.x hashed the bytes alone)."""
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for f in frames:
            h.update(len(f).to_bytes(8, "big"))
            h.update(f)
        return h.hexdigest().encode()

    def check(self, signature: bytes, frames: list[bytes]) -> bool:
        return hmac.compare_digest(signature, self.sign(frames))


@dataclass(frozen=True)
class CurveKeys:
    """The CURVE key pairs of a server and its clients, derived from the shared key (Z85 text, 40 characters).

    Anyone holding the key file derives the same pairs; anyone else cannot complete a connection's handshake,
    so the server never reads a byte of their messages (protocol 3.0).
    """

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes


def curve_keys(key: bytes) -> CurveKeys:
    """Derive the server's and the clients' CURVE key pairs from the shared key.

    Each secret key is HMAC-SHA256(key, "stito curve server" | "stito curve client"), 32 bytes (Curve25519
    clamps it); the public keys follow from them.
    """
    import zmq  # only here: the rest of the protocol needs no pyzmq
    from zmq.utils import z85

    def secret(role: bytes) -> bytes:
        return z85.encode(hmac.new(key, b"stito curve " + role, hashlib.sha256).digest())

    server, client = secret(b"server"), secret(b"client")
    return CurveKeys(zmq.curve_public(server), server, zmq.curve_public(client), client)


def secure_socket(sock: Any, key: bytes, role: str) -> CurveKeys:
    """Set a ZeroMQ socket up for CURVE with the keys of ``key``; call before bind/connect.

    Args:
        sock: A ``zmq.Socket`` (the server's ROUTER or a client's DEALER).
        key: The shared key (the key file's bytes).
        role: "server" or "client".

    Returns:
        The derived keys (the server checks the clients' public key against ``client_public``).
    """
    keys = curve_keys(key)
    if role == "server":
        sock.curve_server = True
        sock.curve_secretkey, sock.curve_publickey = keys.server_secret, keys.server_public
        sock.zap_domain = b"stito"
    elif role == "client":
        sock.curve_serverkey = keys.server_public
        sock.curve_secretkey, sock.curve_publickey = keys.client_secret, keys.client_public
    else:
        raise ValueError(f"role must be 'server' or 'client', got {role!r}")
    return keys


class ReplayGuard:
    """Refuses a msg_id seen before, or a date outside the replay window."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S, max_ids: int = 100_000) -> None:
        self.window_s, self.max_ids = window_s, max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, header: dict[str, Any], now: float | None = None) -> None:
        now = time.time() if now is None else now
        try:
            sent = datetime.fromisoformat(str(header["date"])).timestamp()
        except (KeyError, ValueError):
            raise ProtocolError("BadHeader", "header.date must be an ISO 8601 timestamp") from None
        if abs(now - sent) > self.window_s:
            raise ProtocolError("Replay", f"message date is {now - sent:+.0f} s from the server clock "
                                          f"(window ±{self.window_s:.0f} s)")
        msg_id = str(header.get("msg_id", ""))
        if msg_id in self._seen:
            raise ProtocolError("Replay", f"msg_id {msg_id} was already received")
        self._seen[msg_id] = now
        while self._seen and (len(self._seen) > self.max_ids or next(iter(self._seen.values())) < now - self.window_s):
            self._seen.popitem(last=False)


def serialize(msg: Message, signer: Signer) -> list[bytes]:
    """Message -> frames (without routing identities), signed."""
    parts = [json.dumps(x, separators=(",", ":"), allow_nan=False).encode()
             for x in (msg.header, msg.parent_header, msg.content)]
    frames = parts + [bytes(b) for b in msg.buffers]
    return [DELIMITER, signer.sign(frames)] + frames


def split_identities(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split ROUTER routing identities from the message frames.

    Raises:
        ProtocolError: no delimiter frame.
    """
    for i, f in enumerate(frames):
        if f == DELIMITER:
            return frames[:i], frames[i:]
    raise ProtocolError("BadFrames", "no <IDS|MSG> delimiter frame")


def _not_json(token: str) -> float:
    """``json.loads`` would take NaN and Infinity, which JSON has not (a NaN deadline never expires)."""
    raise ProtocolError("BadJSON", f"header/parent/content is not JSON: {token} is not a JSON number")


def deserialize(frames: list[bytes], signer: Signer, guard: ReplayGuard | None = None,
                max_buffer_bytes: int = MAX_BUFFER_BYTES) -> Message:
    """Frames (starting at the delimiter) -> Message, after size, signature, version and replay checks.

    Raises:
        ProtocolError: with ename BadFrames, TooLarge, BadSignature, BadJSON, BadHeader, BadVersion or Replay.
    """
    if len(frames) < 5 or frames[0] != DELIMITER:
        raise ProtocolError("BadFrames", f"expected at least 5 frames starting with <IDS|MSG>, got {len(frames)}")
    if len(frames) - 5 > MAX_BUFFERS:
        raise ProtocolError("TooLarge", f"{len(frames) - 5} buffers; at most {MAX_BUFFERS} are accepted")
    for f in frames[2:5]:
        if len(f) > MAX_JSON_BYTES:
            raise ProtocolError("TooLarge", f"a JSON frame of {len(f)} bytes exceeds {MAX_JSON_BYTES}")
    if sum(len(f) for f in frames[5:]) > max_buffer_bytes:
        raise ProtocolError("TooLarge", f"buffers exceed {max_buffer_bytes} bytes")
    if not signer.check(bytes(frames[1]), [bytes(f) for f in frames[2:]]):
        raise ProtocolError("BadSignature", "signature does not match (wrong key, or the message was altered)")
    try:
        header, parent, content = (json.loads(bytes(f).decode("utf-8"), parse_constant=_not_json)
                                   for f in frames[2:5])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("BadJSON", f"header/parent/content is not JSON: {exc}") from None
    if not all(isinstance(x, dict) for x in (header, parent, content)):
        raise ProtocolError("BadJSON", "header, parent_header and content must be JSON objects")
    for key in ("msg_id", "msg_type", "version", "date"):
        if not isinstance(header.get(key), str):
            raise ProtocolError("BadHeader", f"header.{key} must be a string")
    major = header["version"].split(".")[0]
    if major != PROTOCOL_VERSION.split(".")[0]:
        raise ProtocolError("BadVersion", f"protocol version {header['version']!r} is not supported; "
                                          f"this server speaks {PROTOCOL_VERSION}")
    if guard is not None:
        guard.check(header)
    return Message(header, parent, content, [bytes(f) for f in frames[5:]])


def audio_to_buffer(x: np.ndarray, sample_rate: int) -> tuple[dict[str, Any], bytes]:
    """``(channels, samples)`` audio -> (description for content, bytes).

    The layout is planar (all of channel 0, then channel 1), float32 little-endian.
    """
    x = np.ascontiguousarray(x, dtype="<f4")
    if x.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {x.shape}")
    meta = {"sample_rate": int(sample_rate), "channels": int(x.shape[0]), "samples": int(x.shape[1]),
            "dtype": "float32", "layout": "planar"}
    return meta, x.tobytes()


def buffer_to_audio(meta: dict[str, Any], buffers: list[bytes], index_key: str = "buffer") -> tuple[np.ndarray, int]:
    """Inverse of ``audio_to_buffer``; checks every field against the buffer.

    Raises:
        ProtocolError: BadAudio naming the inconsistent field.
    """
    try:
        idx, rate = int(meta[index_key]), int(meta["sample_rate"])
        channels, samples = int(meta["channels"]), int(meta["samples"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("BadAudio", f"audio needs integer {index_key}, sample_rate, channels, samples") from None
    if meta.get("dtype", "float32") != "float32" or meta.get("layout", "planar") != "planar":
        raise ProtocolError("BadAudio", "audio must be float32, planar layout")
    if not 0 <= idx < len(buffers):
        raise ProtocolError("BadAudio", f"buffer {idx} does not exist ({len(buffers)} buffers sent)")
    if not (1 <= channels <= 2 and samples > 0 and 8000 <= rate <= 384000):
        raise ProtocolError("BadAudio", f"channels {channels} (1-2), samples {samples} (>0), "
                                        f"sample_rate {rate} (8000-384000) out of range")
    if len(buffers[idx]) != channels * samples * 4:
        raise ProtocolError("BadAudio", f"buffer {idx} has {len(buffers[idx])} bytes; "
                                        f"{channels} x {samples} float32 needs {channels * samples * 4}")
    return np.frombuffer(buffers[idx], dtype="<f4").reshape(channels, samples).astype(np.float32), rate


def config_dir(env: dict[str, str] | None = None) -> Path:
    """The user's stito config folder (``$XDG_CONFIG_HOME/stito`` or ``~/.config/stito``)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stito"


def load_or_create_key(path: Path | None = None, create: bool = True) -> bytes:
    """Read the per-user signing key, creating it (random, mode 0600) on first use.

    Raises:
        PermissionError: the key file is readable or writable by group/others.
        FileNotFoundError: no key and ``create`` is False.
    """
    path = path or config_dir() / "key"
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no stito key at {path}; start stito-server once to create it")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"key file {path} has mode {mode:o}; others could read it: run chmod 600 {path}")
    key = path.read_text().strip().encode()
    if len(key) < 32:
        raise PermissionError(f"key file {path} holds a key of {len(key)} characters; at least 32 are needed")
    return key
