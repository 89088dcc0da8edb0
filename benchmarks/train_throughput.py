"""Training throughput against the reference Seq2KING loop, measured in one run.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--device cpu|cuda] [--parts]

Sequences per second of the whole ``train.py`` loop (data loading, collate,
forward, backward, optimiser, Lightning's bookkeeping), built from the real Hydra
configs exactly as ``python train.py`` builds them, on the embedded default
cohort's KING matrix:

- ``experiment=paper`` (index tokens, 3+2 layers, d_model 120, batch 150, lengths
  2..100) against the reference peer (:mod:`reference_peer`: the reference model
  class and plain loop, re-implemented from its published description) at the same
  batch size and length distribution: the ratio ours / reference, against the
  reference as published (torch's default settings) and against the reference under
  the process settings train.py makes (:mod:`seq2king.runtime`: float32 matmul route,
  allocator), our code against its code on equal terms;
- the default model (``experiment=default``).

Each case runs in its own process (peak memory is its own: max RSS on CPU, max
allocated on CUDA) and is timed over ``--steps`` optimiser steps after 3 warm-up
steps; the loops alternate ``--repeat`` times: the table shows the best of each, the
ratios are the median of each round's paired ratio. ``--parts`` adds the default
model's forward+backward on a fixed full-length
batch, SDPA (training) against the explicit path (analysis), as before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
WARMUP = 3


EXTRA: list[str] = []  # --override: more train.py overrides for our loops


def compose(experiment: str, device: str, steps: int, out: str):
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import open_dict

    overrides = [f"experiment={experiment}", "logger=none", "++callbacks.rich_progress_bar=null",
                 f"++trainer.max_steps={WARMUP + steps}", "trainer.num_sanity_val_steps=0",
                 f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}"]
    if device == "cuda":
        overrides.append("trainer.precision=bf16-mixed")
    overrides += EXTRA
    with initialize_config_dir(config_dir=str(ROOT / "seq2king" / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = out
        cfg.callbacks.model_checkpoint = None
    return cfg


def ours(experiment: str, device: str, steps: int) -> dict:
    """The train.py loop, timed from the end of the warm-up steps to the last step."""
    import pytorch_lightning as pl
    import torch

    from seq2king import runtime
    from seq2king.training import build

    class Clock(pl.Callback):
        def __init__(self):
            self.t0 = self.t1 = None
            self.seqs = 0

        def on_train_batch_start(self, trainer, module, batch, i):
            if i == WARMUP:
                if device == "cuda":
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()
            if i >= WARMUP:
                self.seqs += batch["mask"].shape[0]

        def on_train_batch_end(self, trainer, module, outputs, batch, i):
            if device == "cuda":
                torch.cuda.synchronize()
            self.t1 = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(experiment, device, steps, tmp)
        pl.seed_everything(0, verbose=False)
        precision = runtime.configure(cfg.matmul_precision, device)  # as train.py does
        dm, model, trainer = build(cfg)
        clock = Clock()
        trainer.callbacks.append(clock)
        trainer.fit(model, datamodule=dm)
    return {"what": f"seq2king {experiment}", "seq_per_s": clock.seqs / (clock.t1 - clock.t0),
            "params": sum(p.numel() for p in model.parameters()), "batch": int(cfg.data.batch_size),
            "lengths": f"{cfg.data.min_len}..{cfg.data.max_len}", "peak_mib": peak_mib(device),
            "precision": precision}


def reference(device: str, steps: int, settings: str = "torch") -> dict:
    """The reference loop; ``settings="ours"``: under train.py's process settings (matmul route, allocator)."""
    import reference_peer
    import torch

    from seq2king import runtime
    from seq2king.data.cohort import load_simulated

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose("paper", device, steps, tmp)
    precision = runtime.configure(cfg.matmul_precision, device) if settings == "ours" else \
        torch.get_float32_matmul_precision()
    cohort = load_simulated(**cfg.data.simulation, cache_dir=cfg.paths.cache_dir)
    r = reference_peer.measure(cohort.king, steps=steps, warmup=WARMUP, batch_size=int(cfg.data.batch_size))
    what = "reference (its model class and loop)" + (", train.py's settings" if settings == "ours" else "")
    return {"what": what, "seq_per_s": r["seq_per_s"], "params": r["params"], "batch": int(cfg.data.batch_size),
            "lengths": f"2..{reference_peer.MAX_LEN}", "peak_mib": peak_mib(device), "precision": precision}


def parts(path: str, device: str, steps: int) -> dict:
    """Forward + backward + AdamW of the default model on one full-length batch (no data, no Lightning)."""
    import torch

    from seq2king.model.losses import masked_pair_mse
    from seq2king.model.transformer import Seq2King, Seq2KingConfig

    from seq2king import runtime

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose("default", device, steps, tmp)
    precision = runtime.configure(cfg.matmul_precision, device)  # as train.py does
    m = {k: v for k, v in cfg.model.items() if k not in ("_target_", "_convert_", "optimizer", "scheduler",
                                                        "compile", "attention_loss")}
    m["max_len"] = int(cfg.data.max_len)
    torch.manual_seed(0)
    net = Seq2King(Seq2KingConfig(**m)).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    b, n = int(cfg.data.batch_size), m["max_len"]
    batch = {"features": torch.randn(b, n, m["panel_size"], device=device),
             "index": torch.zeros(b, n, dtype=torch.long, device=device),
             "mask": torch.ones(b, n, dtype=torch.bool, device=device),
             "target": torch.randn(b, n, n, device=device)}
    explicit = path == "explicit"

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            out = net(batch, need_weights=explicit)
            loss = masked_pair_mse((out[0] if explicit else out).float(), batch["target"], batch["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(WARMUP):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return {"what": f"default model, {path} path, batch {b} x {n}", "seq_per_s": b * steps / (time.perf_counter() - t),
            "params": sum(p.numel() for p in net.parameters()), "batch": b, "lengths": f"{n}",
            "peak_mib": peak_mib(device), "precision": precision}


def peak_mib(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def run_case(args, *case) -> dict:
    extra = [f"--override={o}" for o in args.override]
    out = subprocess.run([sys.executable, __file__, "--case", *case, "--device", args.device, "--steps",
                          str(args.steps), *extra], capture_output=True, text=True,
                         env={**os.environ, "WANDB_MODE": "disabled"})
    if out.returncode:
        sys.exit(f"case {case} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{r['what']:45s} batch {r['batch']:3d}, lengths {r['lengths']:>7s}: {r['seq_per_s']:8.1f} seq/s, "
          f"peak {r['peak_mib']:6.0f} MiB", flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2, help="alternate the loops this many times; best of each")
    ap.add_argument("--parts", action="store_true")
    ap.add_argument("--override", action="append", default=[],
                    help="a train.py override for our loops, e.g. data.bucket=false (repeatable)")
    ap.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    EXTRA.extend(args.override)
    if args.case:
        kind, *rest = args.case
        fn = {"ours": lambda: ours(rest[0], args.device, args.steps),
              "reference": lambda: reference(args.device, args.steps, *rest),
              "parts": lambda: parts(rest[0], args.device, args.steps)}[kind]
        print(json.dumps(fn()))
        return 0
    # Alternated and repeated: a shared 2-core machine varies by 10-15% between runs. Each
    # round's ratios are paired (the loops ran back to back); the table shows the best of
    # each loop, the ratios their median over rounds.
    cases = [("reference", "torch"), ("reference", "ours"), ("ours", "paper"), ("ours", "default")]
    runs: dict = {c: [] for c in cases}
    for _ in range(args.repeat):
        for case in cases:
            runs[case].append(run_case(args, *case))
    best = {c: max(rs, key=lambda r: r["seq_per_s"]) for c, rs in runs.items()}
    rows = [best[c] for c in cases]
    if args.parts:
        rows += [run_case(args, "parts", "sdpa"), run_case(args, "parts", "explicit")]
    print(f"\n| loop | batch | lengths | params | float32 matmul | sequences/s (best of {args.repeat}) | "
          f"peak MiB ({args.device}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['batch']} | {r['lengths']} | {r['params']:,} | {r.get('precision', '')} | "
              f"{r['seq_per_s']:.1f} | {r['peak_mib']:.0f} |")

    def ratio(ref_case):
        per_round = [a["seq_per_s"] / b["seq_per_s"] for a, b in zip(runs[("ours", "paper")], runs[ref_case])]
        rounds = ", ".join(f"{x:.2f}" for x in per_round)
        return f"{statistics.median(per_round):.2f}x (rounds: {rounds})"

    print(f"\nexperiment=paper / reference as published (torch's default settings): "
          f"{ratio(('reference', 'torch'))} sequences/s (target >= 2.0)")
    print(f"experiment=paper / reference under train.py's settings (same matmul route and allocator): "
          f"{ratio(('reference', 'ours'))}")
    if args.parts:
        print(f"default model SDPA / explicit: {rows[4]['seq_per_s'] / rows[5]['seq_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
