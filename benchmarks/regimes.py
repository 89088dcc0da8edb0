"""Train the default model on each regime (time-capped), analyse it, print the regimes tables.

    .venv/bin/python benchmarks/regimes.py [--regimes default,ancestry_panel,within_continent]
                                           [--king-only] [--out DIR] [train.py overrides ...]

Each regime is an embedded, cached cohort (``conf/data/``):

- ``default``: the embedded default (AmericanAdmixture_4B18, 1,000 people, 20 Mb);
- ``ancestry_panel``: five continents, 2,504 people, the 170 highest-Fst variants of 150 Mb;
- ``within_continent``: 26 populations in 5 continents, 60 people each, 10,000 unlinked loci;
- ``ancestry_panel_26``: the same 26 populations, 2,504 people, seen through the 170 loci
  with the highest between-continent Fst.

For each: ``python train.py data=REGIME ++trainer.max_time=...`` (180 s, or 300 s
for within_continent: the issue's caps for 2,504 and 1,560 people), then
``python analyze.py run_dir=RUN``, exactly the commands a user runs. ``--king-only``
adds each regime again with ``data.genotype_features=false`` (tokens from KING
alone: the paper's pure claim). Two tables, on test people never seen in training,
at every label level:

- attention: the model's headline intra share (top-1 share) beside the same network
  untrained (its own headline, chosen the same way) and every parameter-free baseline
  at the same entropy (softmax over KING, the token features, the genotype PCs, the
  genomic relationship), the paired difference to the untrained twin (what training
  added) and to the strongest of them all, each with its 95% bootstrap interval and p;
- embeddings: kNN-5 of the model's embedding beside every peer (the untrained twin's
  embedding, token features, KING rows, genotype PCA at 10, 20 and the model's K PCs,
  raw / whitened), and the paired difference to the strongest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPS = {"default": "00:00:03:00", "ancestry_panel": "00:00:03:00", "within_continent": "00:00:05:00",
        "ancestry_panel_26": "00:00:03:00"}
SOFTMAX = ("softmax_king", "softmax_inputs", "softmax_pcs", "softmax_grm")


def run(cmd: list[str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                             env={**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")})
    if res.returncode:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t


def _cmp(c: dict | None) -> str:
    if not c:
        return "-"
    return f"{c['difference']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] p={c['p_value']:.3f}"


def attention_row(regime: str, level: str, b: dict, train_s: float) -> str:
    h, base, strong = b["headline"], b["baselines"], b.get("strongest", {})
    cells = [f"{base[n]['intra_share']:.3f} ({base[n]['top1_share']:.2f})" if n in base else "-"
             for n in ("untrained", *SOFTMAX)]
    a = strong.get("attention", "softmax_king")
    return (f"| {regime} | {level} ({len(b['groups'])}) | {h['intra_share']:.3f} ({h['top1_share']:.2f}) "
            f"L{h['layer']}H{h['head']} {h['scheme']} | " + " | ".join(cells)
            + f" | {_cmp(b['comparisons'].get('untrained'))} | {_cmp(b['comparisons'].get(a))} vs {a} | {train_s:.0f} s |")


def embedding_row(regime: str, level: str, b: dict) -> str:
    e, peers, strong = b["embedding"], b["embedding_baselines"], b.get("strongest", {})

    def knn(name):
        return f"{peers[name]['knn5_accuracy']:.3f}" if name in peers else "-"

    ks = sorted({int(n[len("genotype_pca"):].split("_")[0]) for n in peers if n.startswith("genotype_pca")})
    pca = [f"{k}: {knn(f'genotype_pca{k}')} / {knn(f'genotype_pca{k}_white')}" for k in ks]
    best = strong.get("embedding")
    return (f"| {regime} | {level} | {e['knn5_accuracy']:.3f} | {knn('untrained_embedding')} | {knn('inputs')} | "
            f"{knn('king_rows')} | {'; '.join(pca) or '-'} | {_cmp(b['comparisons'].get(best))} vs {best} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", default="default,ancestry_panel,within_continent",
                    help="comma-separated; ancestry_panel_26 is the same cohort and training as ancestry_panel "
                         "(both levels are analysed on every run), so it is not in the default list")
    ap.add_argument("--king-only", action="store_true",
                    help="also train each regime with data.genotype_features=false (tokens from KING alone)")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "regimes"))
    ap.add_argument("extra", nargs="*", help="more train.py overrides, e.g. model.depth=2")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    att = ["| regime | level (groups) | model intra share (top-1), headline | untrained | softmax_king | "
           "softmax_inputs | softmax_pcs | softmax_grm | model - untrained [95% CI] | "
           "model - strongest baseline [95% CI] | train |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    emb = ["| regime | level | model kNN-5 | untrained | inputs | KING rows | genotype PCA k: raw / whitened | "
           "model - strongest peer [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    runs = [(r, []) for r in args.regimes.split(",")]
    if args.king_only:
        runs += [(r, ["data.genotype_features=false"]) for r in args.regimes.split(",")]
    for regime, more in runs:
        name = regime + (" (KING only)" if more else "")
        tag = regime + ("_king_only" if more else "")
        run_dir = out / tag
        data = "simulated" if regime == "default" else regime
        train_s = run([sys.executable, "train.py", f"data={data}", f"++trainer.max_time={CAPS.get(regime, '00:00:03:00')}",
                       f"hydra.run.dir={run_dir}", *more, *args.extra], out / f"{tag}.train.log")
        run([sys.executable, "analyze.py", f"run_dir={run_dir}", f"hydra.run.dir={run_dir}/analyze_log"],
            out / f"{tag}.analyze.log")
        s = json.loads((run_dir / "analysis" / "summary.json").read_text())
        skill = json.loads((run_dir / "metrics.json").read_text()).get("test/skill", float("nan"))
        for level, b in s["levels"].items():
            att.append(attention_row(name, level, b, train_s))
            emb.append(embedding_row(name, level, b))
        print(f"{name}: trained in {train_s:.0f} s (test skill {skill:.3f}); {run_dir}", flush=True)
    text = "\n".join(att) + "\n\n" + "\n".join(emb)
    (out / "regimes.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
