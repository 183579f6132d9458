"""A straightforward PyTorch + torchdiffeq CRNN on the classic case: the speed baseline.

Same data, model, loss and optimiser as `crnn.fit` (tied w_in, scaled MAE +
order penalty, Adam), integrated with torchdiffeq's dopri5 (rtol 1e-3,
atol 1e-6) and plain backpropagation through the solver, on 2 threads.
Prints one JSON line: epochs per second and the learned rates.

Run: python bench/torch_baseline.py --epochs 200 [--dtype float64]
(needs the optional `bench` dependencies: pip install -e ".[bench]").
"""

import argparse
import json
import time

import numpy as np
import torch
from torchdiffeq import odeint

import crnn
from crnn.report import match_reactions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)

    truth = crnn.Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3")
    ds = crnn.make_dataset(truth, reactants=["A", "B"], seed=0)
    y0 = torch.tensor(ds.y0[ds.train], dtype=dtype)
    data = torch.tensor(ds.ys[ds.train], dtype=dtype).permute(1, 0, 2)  # (time, experiment, species)
    ts = torch.tensor(ds.ts, dtype=dtype)
    scale = torch.tensor(ds.scale(), dtype=dtype)

    n_r, n_s = 4, 5
    w_out = torch.nn.Parameter(0.1 * torch.randn(n_r, n_s, dtype=dtype))
    ln_k = torch.nn.Parameter(torch.empty(n_r, dtype=dtype).uniform_(-4.0, 0.0))  # crnn.fit's default initialisation
    opt = torch.optim.Adam([w_out, ln_k], lr=1e-2)

    def rhs(t, y):
        w_in = torch.clamp(-w_out, 0.0, 2.5)
        rates = torch.exp(ln_k + torch.log(torch.clamp(y, min=1e-5)) @ w_in.T)
        return rates @ w_out

    def step():
        opt.zero_grad()
        pred = odeint(rhs, y0, ts, method="dopri5", rtol=1e-3, atol=1e-6)
        w_in = torch.clamp(-w_out, 0.0, 2.5)
        loss = ((pred - data).abs().mean(dim=(0, 1)) / scale).sum() + torch.relu(w_in.sum(dim=1) - 2.0).sum()
        loss.backward()
        opt.step()
        return float(loss)

    step()  # warm-up
    t0 = time.perf_counter()
    t_first = None
    for epoch in range(args.epochs):
        loss = step()
        if epoch + 1 == min(300, args.epochs):
            t_first = time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    learned = crnn.Mechanism.from_weights(
        truth.species, np.clip(-w_out.detach().numpy(), 0, 2.5), ln_k.detach().numpy(), w_out.detach().numpy(), tol=0.01
    )
    matches = match_reactions(truth, learned)
    print(
        json.dumps(
            {
                "framework": f"torch {torch.__version__} + torchdiffeq dopri5",
                "dtype": args.dtype,
                "threads": args.threads,
                "epochs": args.epochs,
                "epochs_per_s": args.epochs / elapsed,
                "epochs_per_s_first_300": min(300, args.epochs) / t_first,
                "final_loss": loss,
                "max_rate_error": max(m.rate_error for m in matches),
                "max_coefficient_error": max(m.coefficient_error for m in matches),
            }
        )
    )


if __name__ == "__main__":
    main()
