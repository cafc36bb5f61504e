"""Which arithmetic produced a result: the kernel switch and the record every output carries.

Three C++ kernels can stand in for torch on the CPU (``marl_net.native`` builds them): the
policy's fused synapse kernel (``policies/synapse_kernel.cpp``: acting, PPO's learner), the
per-neuron memory's GRU recurrence (``policies/gru_kernel.cpp``, recorded as ``gru_kernel``) and
the observation table's row writer (``marl_net/observation_rows.cpp``, a pure copy). The policy
kernels' results agree with torch's to float rounding, not bit for bit, so a result names the path
it took.

**The switch.** :func:`set_kernels` (``marl-net run --kernels on|off``, ``main_job.run(kernels=)``,
the ``kernels`` context manager) turns every kernel on or off for the process; where nothing set
it, the environment variable ``MARL_NET_FUSED`` (``0``: off) decides, and otherwise they are on.
Kernels that cannot apply (a GPU tensor, float64, a policy size the kernel lacks, no compiler) are
skipped whatever the switch says, so the record says what *ran*, not only what was asked.

**The record.** :func:`describe` returns what ``results.json`` of ``marl-net run`` and ``marl-net
compare``, the bench JSON and fast-path checkpoints store under ``"numerics"``::

    {"policy_path": "fused kernel",            # or "torch": the path the policy's arithmetic took
     "kernels": {"on": true, "source": "default"},  # the switch and who set it: "set" | "MARL_NET_FUSED" | "default"
     "kernels_ran": ["observation_rows", "synapse_kernel"],   # kernels called while recording
     "kernel_builds": {"synapse_kernel": {"compiler": "g++ (Debian 12.2.0-14+deb12u1) 12.2.0",
                                          "flags": ["-O3", "-march=native", ...]}},
     "kernel_threads": 2,                      # threads the policy kernel's work is spread over
     "torch": "2.13.0", "torch_threads": 1, "device": "cpu",
     "device_name": "AMD EPYC (x86_64)", "cpu": "AMD EPYC", "python": "3.11.2"}

The kernels are compiled without ``-ffast-math`` (IEEE arithmetic: a NaN stays a NaN, as on the
torch path; fused multiply-add named by ``-ffp-contract=fast``) and with ``-march=native`` (the
vector width of the host), so the compiler, its flags and the CPU model are all part of the record.

A leaf module: it imports nothing of marl_net, so the kernels' builders and every writer of
results can use it.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any, Iterator

KERNEL_ENV = "MARL_NET_FUSED"  # "0" turns the kernels off where no setting was made
POLICY_KERNEL = "synapse_kernel"  # the name the policy's kernel is recorded under

_setting: bool | None = None
_kernel_threads = 1
_builds: dict[str, dict[str, Any]] = {}
_ran: list[set[str]] = [set()]  # [since the process began, then one per open recording()]


def set_kernels(on: bool | None) -> None:
    """Turn the C++ kernels on or off for this process (None: back to ``MARL_NET_FUSED`` or on)."""
    global _setting
    if on is not None and not isinstance(on, bool):
        raise ValueError(f"kernels={on!r}: pass True (kernels on), False (torch only) or None (MARL_NET_FUSED decides)")
    _setting = on


@contextlib.contextmanager
def kernels(on: bool | None) -> Iterator[None]:
    """``with kernels(False): ...`` runs the block on the torch path (None: leave the setting)."""
    before = _setting
    set_kernels(on if on is not None else before)
    try:
        yield
    finally:
        set_kernels(before)


def kernel_setting() -> dict[str, Any]:
    """The switch as recorded: ``{"on": bool, "source": "set" | "MARL_NET_FUSED" | "default"}``."""
    if _setting is not None:
        return {"on": _setting, "source": "set"}
    value = os.environ.get(KERNEL_ENV)
    if value is not None:
        return {"on": value != "0", "source": KERNEL_ENV}
    return {"on": True, "source": "default"}


def kernels_on() -> bool:
    """Whether the kernels may run (each still checks it applies); see :func:`kernel_setting`."""
    return _setting if _setting is not None else os.environ.get(KERNEL_ENV, "1") != "0"


def set_kernel_threads(threads: int) -> None:
    """Threads the policy kernel's acting and PPO minibatches run on (``FastPPOConfig.kernel_threads``).
    Results do not depend on it: agents are independent when acting, and a minibatch's chunk
    gradients are summed in chunk order whichever thread computed them (``synapse_kernel.cpp``)."""
    global _kernel_threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"kernel_threads={threads!r}: pass a positive integer (1: no extra threads)")
    _kernel_threads = threads


def kernel_threads() -> int:
    return _kernel_threads


def record_build(name: str, compiler: str, flags: list[str]) -> None:
    """Called by ``marl_net.native`` when it loads kernel ``name`` built by ``compiler`` with ``flags``."""
    _builds[name] = {"compiler": compiler, "flags": list(flags)}


def record_ran(name: str) -> None:
    """Called by a kernel's caller each time kernel ``name`` runs (a set insertion per open record)."""
    for seen in _ran:
        seen.add(name)


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """``with recording() as ran: ...``: ``ran`` collects the kernels that ran inside the block
    (what :func:`describe` reports when given it)."""
    seen: set[str] = set()
    _ran.append(seen)
    try:
        yield seen
    finally:  # by identity: list.remove would take the first *equal* set (the process-wide one, say)
        del _ran[next(i for i, other in enumerate(_ran) if other is seen)]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """``device`` in words: the CPU model for ``cpu``, the GPU's name for ``cuda``."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_model()} ({platform.machine()})" if kind == "cpu" else kind


def describe(device: str = "cpu", ran: set[str] | None = None) -> dict[str, Any]:
    """The numerics record (format in the module docstring). ``ran``: the kernels that ran for the
    result being recorded (from :func:`recording`); by default those run since the process began."""
    import torch

    ran = _ran[0] if ran is None else ran
    return {
        "policy_path": "fused kernel" if POLICY_KERNEL in ran else "torch",
        "kernels": kernel_setting(),
        "kernels_ran": sorted(ran),
        "kernel_builds": {name: dict(build) for name, build in sorted(_builds.items()) if name in ran},
        "kernel_threads": _kernel_threads,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }
