"""`stito train presets|pairs|fit|rankset|rankfit|restraint|alignment|stats-prior|export`: build the encoder's pretext data, train it, ship it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from stito_server.cli import run_lab_parser

from .data.corpus import train_root
from .plans import CHECKPOINT, MODELS_DIR, PairPlan, RankPlan, RankTrainPlan, TrainPlan

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
    rs = sub.add_parser("rankset", help="render a ranking set: recording a at a chain setting vs recording b at it "
                        "and at nearby settings (outside git, resumable)")
    rs.add_argument("--out", type=Path, default=None, help="ranking set folder (default: rankset in the data cache)")
    rs.add_argument("--items", type=int, default=RankPlan.items, help="items (default %(default)s)")
    rs.add_argument("--negatives", type=int, default=RankPlan.negatives,
                    help="nearby settings of b per item (default %(default)s)")
    rs.add_argument("--workers", type=int, default=2, help="render processes (default 2)")
    rs.add_argument("--cache", default=None, help="data cache folder of `stito data train`")
    rs.add_argument("--seed", type=int, default=0, help="(default 0)")
    rf = sub.add_parser("rankfit", help="fine-tune an encoder on a ranking set (or resume); checkpoints + CSV log "
                        "in --out")
    rf.add_argument("--ranks", type=Path, default=None, help="ranking set folder (default: $STITO_DATA_DIR/rankset)")
    rf.add_argument("--out", type=Path, required=True, help="checkpoint folder (resumes if it holds one)")
    rf.add_argument("--init", type=Path, default=None,
                    help="start from these weights: an afx-rep-*.pt file or a checkpoint (folder or file); "
                    "default: random weights")
    rf.add_argument("--steps", type=int, default=RankTrainPlan.steps, help="total steps (default %(default)s)")
    rf.add_argument("--batch", type=int, default=RankTrainPlan.batch, help="items per step (default %(default)s)")
    rf.add_argument("--lr", type=float, default=RankTrainPlan.lr, help="peak learning rate (default %(default)s)")
    rf.add_argument("--temperature", type=float, default=RankTrainPlan.temperature,
                    help="softmax temperature over cosine scores (default %(default)s)")
    rf.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    rf.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    rf.add_argument("--seed", type=int, default=0, help="(default 0)")
    rt = sub.add_parser("restraint", help="measure each metric's noise floor (no-style matches on the training "
                        "corpus) and choose the prior weight; writes the package's models/restraint.json")
    rt.add_argument("--metrics", default="stats", help="comma-separated metrics (default: stats)")
    rt.add_argument("--prior-factors", default="0.25,0.5,1,2",
                    help="prior weights to try, as multiples of the metric's typical no-style gain (default "
                    "%(default)s)")
    rt.add_argument("--pairs", type=int, default=12, help="training pairs per run (default %(default)s)")
    rt.add_argument("--quantile", type=float, default=0.9, help="quantile of the no-style gains (default 0.9)")
    rt.add_argument("--cache", default=None, help="data cache folder of `stito data train`")
    rt.add_argument("--seed", type=int, default=0, help="(default 0)")
    rt.add_argument("--probe", type=int, default=0, metavar="CASES",
                    help="instead of calibrating: run CASES training matches (styled from another recording, styled "
                    "from the input's own, unprocessed from another, in turn) with the floors at 0 and print what the "
                    "acceptance rule would have to go on; writes nothing into the package")
    rt.add_argument("--out", type=Path, default=None, help="with --probe: also write the cases as JSON here")
    rt.add_argument("--evidence", choices=("objective", "similarity"), default=None,
                    help="measure gains with the prior's cost (objective) or without it (similarity); the floors "
                    "record it (default: the match's own default)")
    rt.add_argument("--references", type=int, default=1,
                    help="with --probe: references per case (several: from other recordings, styled or unprocessed, "
                    "or clips of one other recording unprocessed, in turn; default 1)")
    rt.add_argument("--floors", choices=("zero", "shipped"), default="zero",
                    help="with --probe: the floors at 0 (what the rule has to go on) or as shipped (what the product "
                    "does; default zero)")
    rt.add_argument("--match-seed", type=int, default=None, metavar="N",
                    help="with --probe: the matches' own seed (default 0; --seed draws the cases). A lever's effect on "
                    "the probe means something only beyond the shipped product's own spread over two or three match "
                    "seeds on the same cases")
    rt.add_argument("--probe-values", default=None, metavar="LIST",
                    help="the search's coordinate probes, e.g. 0,0.5,1, or 'none' (default: the fast preset's)")
    al = sub.add_parser("alignment", help="measure the same-performance detector's thresholds on training clips "
                        "(the input through a style, against other clips and recordings); writes the package's "
                        "models/alignment.json")
    al.add_argument("--clips", type=int, default=40, help="pairs per kind (default %(default)s)")
    al.add_argument("--cache", default=None, help="data cache folder of `stito data train`")
    al.add_argument("--seed", type=int, default=0, help="(default 0)")
    al.add_argument("--floors", type=int, default=0, metavar="CASES",
                    help="instead: measure the same-performance floors on CASES matches of training inputs to "
                    "themselves through a style (needs the thresholds) and write them")
    al.add_argument("--check", type=int, default=0, metavar="CASES",
                    help="instead: CASES such matches as shipped against same_performance=off; writes nothing into "
                    "the package")
    al.add_argument("--out", type=Path, default=None, help="with --check: also write the cases as JSON here")
    sp = sub.add_parser("stats-prior", help="fit the stats metric's raw-recording prior and between-recording "
                        "spread on the training corpus; writes the package's models/stats-prior.json")
    sp.add_argument("--clips", type=int, default=150, help="clips per content type (default %(default)s)")
    sp.add_argument("--reference-prior", type=float, default=0.0,
                    help="the metric's default reference_prior (default %(default)s)")
    sp.add_argument("--whiten", action="store_true",
                    help="also whiten by the full between-recording covariance (Ledoit-Wolf); measured on task 5, "
                         "no better than the per-descriptor spreads the shipped prior uses (docs/match-quality.md)")
    sp.add_argument("--amplitude-histogram", action="store_true",
                    help="also the share of samples within 6 and 12 dB of the peak (docs/match-quality.md)")
    sp.add_argument("--echo", action="store_true",
                    help="also the echo strengths: how far a lag stands out in the frames' cepstrum, in six bands of "
                         "delay times from 30 to 450 ms")
    sp.add_argument("--family-weight", type=float, default=1.0,
                    help="how many descriptors' worth each added descriptor (--amplitude-histogram, --echo) counts "
                         "in the metric's distance (default %(default)s)")
    sp.add_argument("--out", type=Path, default=None, help="write here instead of the package's models/")
    sp.add_argument("--cache", default=None, help="data cache folder of `stito data train`")
    sp.add_argument("--seed", type=int, default=0, help="(default 0)")
    e = sub.add_parser("export", help="write the checkpoint's encoder to models/afx-rep-<sha256 prefix>.pt")
    e.add_argument("checkpoint", type=Path, help=f"checkpoint folder or its {CHECKPOINT}")
    e.add_argument("--out", type=Path, default=MODELS_DIR, help="destination folder (default: models/)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stito train ...``; returns the exit status."""
    t0 = time.perf_counter()
    if args.train_command == "presets":
        from stito_server.examples import phrase

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
    elif args.train_command == "rankset":
        from .ranking import build_rankset, default_rankset_dir

        try:
            rplan = RankPlan(items=args.items, negatives=args.negatives, seed=args.seed)
        except ValueError as exc:
            raise SystemExit(f"stito train rankset: {exc}") from None
        out = build_rankset(train_root(args.cache), args.out or default_rankset_dir(args.cache), rplan,
                            workers=args.workers)
        print(f"ranking set in {out} ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "rankfit":
        from .rank_train import train_ranking
        from .ranking import default_rankset_dir

        plan = RankTrainPlan(steps=args.steps, batch=args.batch, lr=args.lr, temperature=args.temperature,
                             seed=args.seed, init=_init_path("rankfit", args.init))
        ck = train_ranking(args.ranks or default_rankset_dir(), args.out, plan, device=args.device,
                           threads=args.threads)
        print(f"checkpoint {ck} ({time.perf_counter() - t0:.0f} s this run)")
    elif args.train_command == "fit":
        from .pairs import default_pairs_dir
        from .train import train

        init = _init_path("fit", args.init)
        plan = TrainPlan(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                         contrastive_weight=args.contrastive_weight, init=init)
        ck = train(args.pairs or default_pairs_dir(), args.out, plan, device=args.device, threads=args.threads)
        print(f"checkpoint {ck} ({time.perf_counter() - t0:.0f} s this run)")
    elif args.train_command == "restraint" and args.probe:
        import json

        from .restraint import CHAINS, probe

        changes = _restraint_changes(args)
        rows = probe(train_root(args.cache), args.probe, args.seed, CHAINS[0], args.metrics.split(",")[0],
                     changes=changes, references=args.references, floors=args.floors)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        print(f"probe done ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "restraint":
        from .restraint import calibrate

        try:
            factors = [float(w) for w in args.prior_factors.split(",")]
        except ValueError:
            raise SystemExit(f"stito train restraint: --prior-factors takes numbers, got {args.prior_factors!r}") from None
        changes = _restraint_changes(args)  # a bad flag fails before the corpus is read
        calibrate(train_root(args.cache), args.metrics.split(","), factors, args.pairs, args.quantile, args.seed,
                  changes=changes)
        print(f"floors written ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "alignment":
        from .alignment import calibrate_alignment, calibrate_floors, check

        if args.check:
            import json

            res = check(train_root(args.cache), args.check, args.seed)
            if args.out:
                args.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        elif args.floors:
            calibrate_floors(train_root(args.cache), args.floors, args.seed)
        else:
            calibrate_alignment(train_root(args.cache), args.clips, args.seed)
        print(f"done ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "stats-prior":
        from .stats_prior import fit_stats_prior

        if args.family_weight != 1.0 and not (args.amplitude_histogram or args.echo):
            raise SystemExit(f"stito train stats-prior: --family-weight {args.family_weight:g} weighs the descriptors "
                             "that --amplitude-histogram or --echo add; give one of them")
        if not args.family_weight > 0:
            raise SystemExit(f"stito train stats-prior: --family-weight must be above 0, got {args.family_weight:g}")
        res = fit_stats_prior(train_root(args.cache), args.clips, reference_prior=args.reference_prior,
                              seed=args.seed, out=args.out, whiten_covariance=args.whiten,
                              amplitude=args.amplitude_histogram, echo=args.echo,
                              family_weight=args.family_weight)
        print(f"stats prior from {res['clips']} clips ({time.perf_counter() - t0:.0f} s)")
    elif args.train_command == "export":
        from stito_server.metrics.weights import export_weights

        ck = args.checkpoint / CHECKPOINT if args.checkpoint.is_dir() else args.checkpoint
        print(f"wrote {export_weights(ck, args.out)}")
    else:
        raise SystemExit(f"unknown train command {args.train_command!r}; valid: presets, pairs, fit, rankset, "
                         "rankfit, restraint, alignment, stats-prior, export")
    return 0


def _init_path(command: str, init: Path | None) -> str:
    """``--init`` as an absolute file path ("" when not given); a folder means its checkpoint."""
    if init is None:
        return ""
    path = init / CHECKPOINT if init.is_dir() else init
    if not path.is_file():
        raise SystemExit(f"stito train {command}: --init {init}: no checkpoint or weights file there")
    return str(path.resolve())


def main(argv: Sequence[str]) -> int:
    """`stito train ARGS`: the entry point `stito` loads for its `train` command (ARGS follow the name)."""
    return run_lab_parser("train", add_parser, run, argv)


def _restraint_changes(args: argparse.Namespace) -> dict:
    """MatchOptions fields `stito train restraint` sets on its matches (``--evidence``, ``--probe-values``, and with
    ``--probe`` ``--match-seed``)."""
    changes: dict = {}
    if args.match_seed is not None:
        if not args.probe:
            raise SystemExit("stito train restraint: --match-seed is for --probe (a calibration's matches take --seed)")
        changes["seed"] = args.match_seed
    if args.evidence:
        changes["evidence"] = args.evidence
    if args.probe_values:
        try:
            changes["probe_values"] = () if args.probe_values == "none" else tuple(
                float(v) for v in args.probe_values.split(","))
        except ValueError:
            raise SystemExit("stito train restraint: --probe-values takes numbers from 0 to 1 such as 0,0.5,1, or "
                             f"'none'; got {args.probe_values!r}") from None
    return changes
