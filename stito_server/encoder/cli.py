"""`stito train presets|pairs|fit|export`: build the encoder's pretext data, train it, ship its weights."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data.cli import train_root
from .plans import CHECKPOINT, MODELS_DIR, PairPlan, TrainPlan

PRESETS_FILE = MODELS_DIR / "presets.json"
PROBE_SECONDS = 3.0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` with its sub-commands to a CLI's sub-parsers."""
    p = subparsers.add_parser("train", help="train the AFx-Rep style encoder (presets, pairs, fit, export)")
    sub = p.add_subparsers(dest="train_command", required=True)
    pr = sub.add_parser("presets", help="10 presets per pretext effect (k-means medoids of 1000 random settings)")
    pr.add_argument("--out", type=Path, default=PRESETS_FILE, help="presets JSON (default: models/presets.json)")
    pr.add_argument("--settings", type=int, default=1000, help="random settings per effect (default 1000)")
    pr.add_argument("--seed", type=int, default=0, help="(default 0)")
    pa = sub.add_parser("pairs", help="render the pretext pairs into log-mel memmaps (outside git, resumable)")
    pa.add_argument("--presets", type=Path, default=PRESETS_FILE, help="presets JSON (default: models/presets.json)")
    pa.add_argument("--out", type=Path, default=None, help="pairs folder (default: pairs in the data cache)")
    pa.add_argument("--items", type=int, default=PairPlan.items, help="pretext items (default %(default)s)")
    pa.add_argument("--chain-share", type=float, default=PairPlan.chain_share,
                    help="share of items that chain 2-3 effects (contrastive term only; default %(default)s)")
    pa.add_argument("--workers", type=int, default=2, help="render processes (default 2)")
    pa.add_argument("--cache", default=None, help="data cache folder of `stito data train`")
    pa.add_argument("--seed", type=int, default=0, help="(default 0)")
    f = sub.add_parser("fit", help="train (or resume) from a pairs folder; checkpoints + CSV log in --out")
    f.add_argument("--pairs", type=Path, default=None, help="pairs folder (default: $STITO_DATA_DIR/pairs)")
    f.add_argument("--out", type=Path, required=True, help="checkpoint folder (resumes if it holds one)")
    f.add_argument("--steps", type=int, default=TrainPlan.steps, help="total steps (default %(default)s)")
    f.add_argument("--batch", type=int, default=TrainPlan.batch, help="items per step (default %(default)s)")
    f.add_argument("--lr", type=float, default=TrainPlan.lr, help="peak learning rate (default %(default)s)")
    f.add_argument("--contrastive-weight", type=float, default=TrainPlan.contrastive_weight,
                   help="weight of the same-style InfoNCE term (default %(default)s)")
    f.add_argument("--init", type=Path, default=None,
                   help="fine-tune: start from this checkpoint's model weights (folder or file)")
    f.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    f.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    f.add_argument("--seed", type=int, default=0, help="(default 0)")
    e = sub.add_parser("export", help="write the checkpoint's encoder to models/afx-rep-<sha256 prefix>.pt")
    e.add_argument("checkpoint", type=Path, help=f"checkpoint folder or its {CHECKPOINT}")
    e.add_argument("--out", type=Path, default=MODELS_DIR, help="destination folder (default: models/)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stito train ...``; returns the exit status."""
    t0 = time.perf_counter()
    if args.train_command == "presets":
        from ..examples import phrase
        from .effects import pretext_effects
        from .presets import build_presets

        # The probe is the generated example phrase (bass, chords, drums): license-free and always there.
        probe = phrase(PROBE_SECONDS, 48000, seed=args.seed)
        build_presets(pretext_effects(), probe, 48000, args.out, n_settings=args.settings, seed=args.seed)
        print(f"presets in {args.out} ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "pairs":
        from .pairs import build_pairs, default_pairs_dir

        try:
            plan = PairPlan(items=args.items, seed=args.seed, chain_share=args.chain_share)
        except ValueError as exc:
            raise SystemExit(f"stito train pairs: {exc}") from None
        out = build_pairs(train_root(args.cache), args.presets, args.out or default_pairs_dir(args.cache), plan,
                          workers=args.workers)
        print(f"pairs in {out} ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "fit":
        from .pairs import default_pairs_dir
        from .train import train

        init = ""
        if args.init:
            init_path = args.init / CHECKPOINT if args.init.is_dir() else args.init
            if not init_path.is_file():
                raise SystemExit(f"stito train fit: --init {args.init}: no checkpoint there")
            init = str(init_path.resolve())
        plan = TrainPlan(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                         contrastive_weight=args.contrastive_weight, init=init)
        ck = train(args.pairs or default_pairs_dir(), args.out, plan, device=args.device, threads=args.threads)
        print(f"checkpoint {ck} ({time.perf_counter() - t0:.0f} s this run)")
    elif args.train_command == "export":
        from .weights import export_weights

        ck = args.checkpoint / CHECKPOINT if args.checkpoint.is_dir() else args.checkpoint
        print(f"wrote {export_weights(ck, args.out)}")
    else:
        raise SystemExit(f"unknown train command {args.train_command!r}; valid: presets, pairs, fit, export")
    return 0
