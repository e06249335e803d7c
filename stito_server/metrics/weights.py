"""Shipped encoder weights: export a checkpoint under a hash-prefixed name, and load it back verified."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import torch

from ..audio import save_atomically
from ..errors import StitoError
from .encoder import EncoderConfig, StyleEncoder
from ..resources import package_dir

NAME_RE = re.compile(r"^afx-rep-([0-9a-f]{8})\.pt$")
WEIGHTS_FORMAT = 1


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_weights(checkpoint: Path, out_dir: Path, extra: dict | None = None) -> Path:
    """Write the encoder of a training checkpoint as ``afx-rep-<first 8 hex of its SHA-256>.pt``.

    Only the encoder's tensors, its config and a small plain-data summary are kept (no optimiser state,
    no heads), so the file loads with ``torch.load(weights_only=True)``.

    Args:
        checkpoint: ``checkpoint.pt`` of ``stito train fit``.
        out_dir: Destination folder.
        extra: Plain data to store beside the weights (e.g. training steps and wall time).

    Returns:
        The written file.
    """
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = {k[len("encoder."):]: v for k, v in ck["model"].items() if k.startswith("encoder.")}
    payload = {"format": WEIGHTS_FORMAT, "config": ck["config"], "state_dict": state,
               "effects": list(ck["effects"]), "n_presets": int(ck["n_presets"]), "step": int(ck["step"]),
               "train_wall_s": float(ck["wall_s"]), "extra": extra or {}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    out = Path(out_dir) / f"afx-rep-{hashlib.sha256(data).hexdigest()[:8]}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(out, lambda tmp: Path(tmp).write_bytes(data))
    return out


def read_weights(path: str | Path, device: str = "cpu") -> dict:
    """The payload of a weights file (``export_weights``' dict), after checking its SHA-256 against its name.

    Args:
        path: ``afx-rep-XXXXXXXX.pt``.
        device: torch device the tensors load onto.

    Raises:
        StitoError: missing file, a name without the hash prefix, content that does not match it, or another
            format.
    """
    path = Path(path)
    m = NAME_RE.match(path.name)
    if not m:
        raise StitoError(f"encoder weights {path.name!r} must be named afx-rep-<8 hex digits of SHA-256>.pt")
    if not path.is_file():
        raise StitoError(f"encoder weights {path} not found")
    digest = sha256_of(path)
    if not digest.startswith(m.group(1)):
        raise StitoError(f"encoder weights {path} are corrupt or were modified: the name says SHA-256 "
                         f"{m.group(1)}..., the file's is {digest[:8]}...; restore it (git checkout) or re-export")
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("format") != WEIGHTS_FORMAT:
        raise StitoError(f"encoder weights {path} have format {payload.get('format')!r}; this stito reads "
                         f"format {WEIGHTS_FORMAT}")
    return payload


def load_encoder(path: str | Path, device: str = "cpu") -> StyleEncoder:
    """Load shipped weights after checking the file's SHA-256 against the prefix in its name.

    Args:
        path: ``afx-rep-XXXXXXXX.pt``.
        device: torch device.

    Raises:
        StitoError: missing file, a name without the hash prefix, or content that does not match it.
    """
    payload = read_weights(path, device)
    model = StyleEncoder(EncoderConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def shipped_weights(models_dir: Path | None = None) -> Path:
    """The one ``afx-rep-*.pt`` file in ``models_dir`` (default: the package's ``models/``).

    Raises:
        StitoError: none or several are there (the message lists them).
    """
    models_dir = package_dir("models") if models_dir is None else models_dir
    found = sorted(p for p in Path(models_dir).glob("afx-rep-*.pt"))
    if len(found) != 1:
        raise StitoError(f"expected exactly one afx-rep-*.pt in {models_dir}, found "
                         f"{[p.name for p in found] or 'none'}; use --metric mfcc, or restore stito_server/models/ from git")
    return found[0]
