"""C++ kernels compiled on first use for the machine they run on, cached, loaded with ctypes.

Two sources use it: the policy's fused synapse kernel (``marl_net.policies.fused_layer``) and the
observation table's row writer (``marl_net.observation_rows``). Each is built with the system's C++
compiler (``g++``, or ``$CXX``) once per source, compiler, flags and host, under
``$MARL_NET_KERNEL_CACHE`` (default ``~/.cache/marl_net/kernels``); each Ray node builds its own.
Where a kernel cannot be built (no compiler) or is turned off (``MARL_NET_FUSED=0``) its caller
runs its torch path, which tests hold equal to the kernel.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

_loaded: dict[Path, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """``MARL_NET_FUSED=0`` turns every native kernel off (their callers then run torch)."""
    return os.environ.get("MARL_NET_FUSED", "1") != "0"


def cache_dir() -> Path:
    return Path(os.environ.get("MARL_NET_KERNEL_CACHE", Path.home() / ".cache" / "marl_net" / "kernels"))


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def build(source: Path, flags: Sequence[str]) -> Path:
    """Compile ``source`` with ``flags`` (once per source, compiler, flags and host) and return the
    shared library's path."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([source.read_text(), cxx, version, *flags, platform.node(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # build aside, then move: safe under races
            out = Path(tmp) / target.name
            subprocess.run([cxx, *flags, str(source), "-o", str(out)], capture_output=True, text=True, check=True)
            os.replace(out, target)
    return target


def load(source: Path, flags: Sequence[str], fallback: str) -> ctypes.CDLL | None:
    """The library built from ``source``, loaded once; None, with one warning naming ``fallback``
    (what runs instead), when it cannot be built here."""
    if source not in _loaded:
        try:
            _loaded[source] = ctypes.CDLL(str(build(source, flags)))
        except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or err
            warnings.warn(f"{source.name} could not be built ({detail}); {fallback}")
            _loaded[source] = None
    return _loaded[source]
