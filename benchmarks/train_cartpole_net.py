"""Train the test subject of issue 15: a 4-state network closed loop of the published cart-pole's
size, with lyapcert's own joint synthesis (``neural-roa``, ``--controller neural``).

    OMP_NUM_THREADS=1 python benchmarks/train_cartpole_net.py

System ``cartpole-wide`` (box +-(3.6, 2.4, 12, 12), |u| <= 30). Controller: ``NeuralController``
``u = clamp(u* - K(x - x*) + g(x) - g(x*), -30, 30)`` with ``g`` a tanh MLP 4-32-32-1 and ``K``
the LQR gain (training starts from LQR). Candidate: ``LyapunovNetwork`` with ``phi`` a tanh MLP
4-128-128-1 (``outputs=1``) on box units ``s`` (the half-widths):
``V(x) = (phi(x/s) - phi(x*/s))^2 + 1e-3 |(x - x*)/s|^2 + (x - x*)' P (x - x*)``, ``P`` the
linearisation's quadratic (scaled by the method). Both are trained together; one CPU thread,
seed fixed.

Writes ``V.pt`` and ``controller.pt`` (TorchScript, float64; ``lyapcert verify cartpole-wide
--candidate V.pt --controller controller.pt``) and ``training.json`` (options, seconds, sampled
decrease shares) to ``--out`` (default ``benchmarks/data/cartpole-net``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

import lyapcert
from lyapcert.control.closed_loop import close_for_method
from lyapcert.methods import get_method
from lyapcert.methods.training import decrease

HERE = Path(__file__).resolve().parent


def sampled_decrease(system, net, count: int = 200_000, seed: int = 1) -> dict:
    """Shares of uniform box points where ``dV/dt < 0`` (the closed loop), overall and inside
    ``{V <= c}`` for a few levels ``c``; ``V`` at the farthest box corner for scale."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = system.domain.as_tensors(torch.float64)
    x = lo + torch.rand(count, len(lo), generator=gen, dtype=torch.float64) * (hi - lo)
    dv, v = [], []
    for chunk in x.split(20_000):
        chunk = chunk.clone().requires_grad_(True)
        dv.append(decrease(system, net, chunk).detach())
        v.append(net(chunk).detach())
    dv, v = torch.cat(dv), torch.cat(v)
    out = {"points": count, "box": float((dv < 0).double().mean())}
    for c in (0.1, 0.5, 1.0):
        inside = v <= c
        out[f"V<={c}"] = {
            "share_of_box": float(inside.double().mean()),
            "decrease_share": float((dv[inside] < 0).double().mean()) if inside.any() else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000, help="epochs per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--adversarial-points", type=int, default=2048)
    parser.add_argument("--verify-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "data" / "cartpole-net")
    args = parser.parse_args()
    torch.set_num_threads(1)

    open_loop = lyapcert.get_system("cartpole-wide")
    method = get_method("neural-roa")
    options = method.Options(
        width=128,
        depth=2,
        outputs=1,
        activation="tanh",
        epochs=args.epochs,
        rounds=args.rounds,
        samples=args.samples,
        adversarial_points=args.adversarial_points,
        verify_seconds=args.verify_seconds,
        controller_width=32,
        controller_depth=2,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    system, options = close_for_method(open_loop, "neural", method, options)
    started = time.perf_counter()
    fit = method.fit(system, options, progress=True)
    seconds = time.perf_counter() - started
    for record in fit.info.get("history", []):
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})

    net = fit.candidate.module.eval()
    controller = system.controller.eval()
    shares = sampled_decrease(system.frozen(), net)
    print(f"trained in {seconds:.0f} s; sampled decrease: {json.dumps(shares)}")

    args.out.mkdir(parents=True, exist_ok=True)
    torch.jit.script(net).save(str(args.out / "V.pt"))
    torch.jit.script(controller).save(str(args.out / "controller.pt"))
    record = {
        "system": "cartpole-wide",
        "method": "neural-roa",
        "controller": "neural",
        "options": {k: v for k, v in vars(options).items()},
        "V": net.spec(),
        "controller_spec": controller.spec(),
        "train_seconds": seconds,
        "threads": torch.get_num_threads(),
        "sampled_decrease": shares,
        "history": fit.info.get("history", []),
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
