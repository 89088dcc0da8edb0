"""Training throughput: sequences/s and peak memory, SDPA vs explicit attention.

    .venv/bin/python benchmarks/train_throughput.py [--device cpu|cuda] [--steps 5]

For ``experiment=paper`` and our default model (shapes from the real Hydra
configs), one optimiser step = forward + backward + AdamW on a full batch of
full-length sequences. The explicit path is the one analysis uses (it
materialises the (batch, heads, n, n) weights); SDPA is the training path. Each
case runs in its own process so peak memory is its own (CPU: max RSS; CUDA:
max allocated). On CUDA the step runs under bf16 autocast, where SDPA can use
flash attention. Prints ratios SDPA / explicit measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def model_settings(experiment: str) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    m = {k: v for k, v in cfg.model.items() if k not in ("_target_", "_convert_", "optimizer", "scheduler",
                                                        "compile")}
    m["max_len"] = int(cfg.data.max_len)
    return {"model": m, "batch_size": int(cfg.data.batch_size), "lr": float(cfg.model.optimizer.lr)}


def one_case(experiment: str, path: str, device: str, steps: int) -> dict:
    import resource

    import torch

    from seq2king.model.transformer import Seq2King, Seq2KingConfig, masked_pair_mse

    s = model_settings(experiment)
    m = dict(s["model"])
    if m["tokenizer"] == "index":
        m["num_individuals"] = 2500
    torch.manual_seed(0)
    net = Seq2King(Seq2KingConfig(**m)).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=s["lr"])
    b, n = s["batch_size"], m["max_len"]
    batch = {"features": torch.randn(b, n, m["panel_size"], device=device),
             "index": torch.randint(0, 2500, (b, n), device=device),
             "mask": torch.ones(b, n, dtype=torch.bool, device=device),
             "target": torch.randn(b, n, n, device=device)}
    explicit = path == "explicit"

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            out = net(batch, need_weights=explicit)
            pred = out[0] if explicit else out
            loss = masked_pair_mse(pred.float(), batch["target"], batch["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"experiment": experiment, "path": path, "batch": b, "length": n,
            "params": sum(p.numel() for p in net.parameters()),
            "seq_per_s": b * steps / dt, "peak_mib": peak / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(one_case(*args.case, args.device, args.steps)))
        return 0
    rows = []
    for experiment in ("default", "paper"):
        for path in ("sdpa", "explicit"):
            out = subprocess.run([sys.executable, __file__, "--case", experiment, path, "--device", args.device,
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{experiment:8s} {path:8s} batch {r['batch']:3d} x {r['length']:3d}: "
                  f"{r['seq_per_s']:8.1f} seq/s, peak {r['peak_mib']:7.0f} MiB", flush=True)
    print(f"\n| experiment | path | batch x length | params | sequences/s | peak MiB ({args.device}) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['experiment']} | {r['path']} | {r['batch']} x {r['length']} | {r['params']:,} | "
              f"{r['seq_per_s']:.1f} | {r['peak_mib']:.0f} |")
    for e in ("default", "paper"):
        sd, ex = [r for r in rows if r["experiment"] == e]
        print(f"{e}: SDPA / explicit throughput {sd['seq_per_s'] / ex['seq_per_s']:.2f}x, "
              f"peak memory {sd['peak_mib'] / ex['peak_mib']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
