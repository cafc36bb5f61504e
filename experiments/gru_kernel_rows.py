"""The GRU kernel (``policies/gru_kernel.cpp``) of this tree against the one of another git revision:
the same outputs bit for bit, and the time of a forward and a backward.

    python experiments/gru_kernel_rows.py                  # against 5276f5f: one row at a time
    python experiments/gru_kernel_rows.py --against REV --rounds 7 --steps 50 --rows 4096

Both sources are built with the kernels' flags (``marl_net.policies.fused_layer.FLAGS``; the
other revision's with its own ``simd.h``). Identity: random inputs (resets included) at every state
width the kernel takes (16, 32, 48, 64) and row counts 1, 3, 7, 13 and 130, every output of the
forward (states, gates) and of the backward (gate gradients, the start state's gradient) compared
with ``torch.equal``. Time: one thread, ``--steps`` steps of ``--rows`` rows (the benchmark's (e)
runs 16-wide states), the two kernels in alternating rounds, the median of each. Exits 1 if an
output differs.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from marl_net import native
from marl_net.policies.fused_layer import FLAGS

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "policies" / "gru_kernel.cpp"
WIDTHS, ROW_COUNTS = (16, 32, 48, 64), (1, 3, 7, 13, 130)


def load(source: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(native.build(source, FLAGS)))
    ptr, n = ctypes.c_void_p, ctypes.c_long
    lib.gru_forward.argtypes = [ptr] * 5 + [n] * 3 + [ptr] * 4
    lib.gru_backward.argtypes = [ptr] * 7 + [n] * 3 + [ptr] * 3
    lib.set_threads.argtypes = [n]
    lib.set_threads(1)
    return lib


def checkout(rev: str, into: Path) -> Path:
    """The kernel source and its header at git revision ``rev``, written into ``into``."""
    for name in ("gru_kernel.cpp", "simd.h"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:policies/{name}"], capture_output=True,
                              text=True, check=True).stdout
        (into / name).write_text(text)
    return into / "gru_kernel.cpp"


def problem(steps: int, rows: int, width: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(3 * width, width, generator=g) / width ** 0.5
    return {"gx": torch.randn(steps, rows, 3 * width, generator=g), "h0": torch.randn(rows, width, generator=g),
            "keep": (torch.rand(steps, rows, 1, generator=g) > 0.2).float(), "W": weight, "WT": weight.t().contiguous(),
            "b": torch.randn(3 * width, generator=g), "grad": torch.randn(steps, rows, width, generator=g)}


def run(lib: ctypes.CDLL, p: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], float, float]:
    """Forward then backward of problem ``p``: the outputs and the two durations (s)."""
    steps, rows, width = p["grad"].shape
    ptr = lambda t: t.data_ptr()
    hist, gh = torch.empty(steps + 1, rows, width), torch.empty(steps, rows, 3 * width)
    rz, n = torch.empty(steps, rows, 2 * width), torch.empty(steps, rows, width)
    dgx, dgh, carry = torch.empty(steps, rows, 3 * width), torch.empty(steps, rows, 3 * width), torch.empty(rows, width)
    t0 = time.perf_counter()
    lib.gru_forward(ptr(p["gx"]), ptr(p["h0"]), ptr(p["keep"]), ptr(p["WT"]), ptr(p["b"]), steps, rows, width,
                    ptr(hist), ptr(gh), ptr(rz), ptr(n))
    t1 = time.perf_counter()
    lib.gru_backward(ptr(p["grad"]), ptr(hist), ptr(gh), ptr(rz), ptr(n), ptr(p["keep"]), ptr(p["W"]), steps, rows,
                     width, ptr(dgx), ptr(dgh), ptr(carry))
    t2 = time.perf_counter()
    return [hist, gh, rz, n, dgx, dgh, carry], t1 - t0, t2 - t1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="5276f5f", help="the git revision to compare with (default: 5276f5f, "
                        "the kernel that stepped one row at a time)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (default 5)")
    parser.add_argument("--steps", type=int, default=50, help="steps of the timed recurrence (default 50)")
    parser.add_argument("--rows", type=int, default=4096, help="rows of the timed recurrence (default 4096)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.rows) < 1:
        parser.error("--rounds, --steps and --rows must be at least 1")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        libs = {"this tree": load(SOURCE), args.against: load(checkout(args.against, Path(tmp)))}
    mine, other = libs.values()
    differ = [(w, m) for w in WIDTHS for m in ROW_COUNTS
              if not all(torch.equal(a, b) for a, b in zip(run(mine, problem(5, m, w, w * m))[0],
                                                           run(other, problem(5, m, w, w * m))[0]))]
    print(f"outputs bit-identical at widths {WIDTHS} x rows {ROW_COUNTS}: {'no' if differ else 'yes'}")
    print(f"{'width':>5} {'kernel':>12} {'forward ms':>11} {'backward ms':>12}   ({args.steps} steps x {args.rows} "
          f"rows, median of {args.rounds} alternating rounds, one thread)")
    for width in (16, 32):
        p = problem(args.steps, args.rows, width, 0)
        times = {name: ([], []) for name in libs}
        for _ in range(args.rounds):
            for name, lib in libs.items():
                _, fwd, bwd = run(lib, p)
                times[name][0].append(fwd), times[name][1].append(bwd)
        med = {name: [sorted(t)[len(t) // 2] * 1e3 for t in ts] for name, ts in times.items()}
        for name, (fwd, bwd) in med.items():
            print(f"{width:>5} {name:>12} {fwd:>11.1f} {bwd:>12.1f}")
        (f0, b0), (f1, b1) = med.values()
        print(f"{width:>5} {'speed-up':>12} {f1 / f0:>10.2f}x {b1 / b0:>11.2f}x")
    if differ:
        print(f"FAILED: outputs differ at (width, rows) {differ}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
