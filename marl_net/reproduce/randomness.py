"""Per-copy uniform draws in chunks.

Drawing a few numbers per step from each of E generators costs more Python than the step itself,
so every copy draws ``chunk`` steps' worth at once from its own generator. Copy e's numbers depend
only on its own seed and the chunk size, so a batch of seeds draws exactly what the seeds draw one
by one.
"""

from __future__ import annotations

import torch

from marl_net import seeding

STREAM_ACTOR = 0xC4A1  # keys that separate the network's stream from an environment's seed
STREAM_CRITIC = 0xC417


def copy_generators(seeds, stream: int, device="cpu") -> list[torch.Generator]:
    return seeding.make_generators([seeding.seed_from(int(s), stream) for s in seeds], device=device)


class UniformStream:
    """``next()`` gives ``[E, width]`` uniforms in [0, 1), refilled ``chunk`` steps at a time."""

    def __init__(self, gens, width: int, chunk: int = 1024, dtype=torch.float32):
        if width < 1 or chunk < 1:
            raise ValueError(f"width={width} and chunk={chunk} must be >= 1")
        self.gens, self.width, self.chunk, self.dtype = gens, int(width), int(chunk), dtype
        self._buf: torch.Tensor | None = None
        self._i = self.chunk

    def next(self) -> torch.Tensor:
        if self._i == self.chunk:
            self._buf = seeding.rand(self.gens, (self.chunk, self.width), dtype=self.dtype)
            self._i = 0
        out = self._buf[:, self._i]
        self._i += 1
        return out
