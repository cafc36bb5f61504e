"""Chung's multiplexer as a supervised task: ``address_bits`` address bits select one of
``2**address_bits`` data bits; the label is the selected bit (2 classes, cross-entropy).

Inputs are +-1 (20 bits by default: 4 address + 16 data). The function is fixed; instances differ
by their samples (drawn with seed ``task_id``). An instance's test split is ``num_samples`` fresh
draws seeded ``seed_from(task_id, TEST_STREAM)`` (a hash: torch's CPU generator keeps only a seed's
low 32 bits, so ``task_id + 2**32`` would repeat the training draws); with 2**20 possible inputs, a
test input coincides with one of the instance's 4,096 training inputs with probability below 0.4%.
"""

from __future__ import annotations

import torch

from marl_net.seeding import seed_from
from marl_net.tasks.base import TEST_STREAM, Task, TaskData, register_task


def multiplexer_labels(bits: torch.Tensor, address_bits: int) -> torch.Tensor:
    """``bits [..., a + 2**a]`` in {-1, +1} -> the addressed data bit as a label in {0, 1}."""
    address = (bits[..., :address_bits] > 0).long()
    weights = 2 ** torch.arange(address_bits - 1, -1, -1, device=bits.device)
    index = (address * weights).sum(-1)
    data = bits[..., address_bits:]
    return (data.gather(-1, index.unsqueeze(-1)).squeeze(-1) > 0).long()


@register_task("multiplexer", "Chung's 20-bit multiplexer (4 address + 16 data bits, inputs +-1), 2 classes")
class Multiplexer(Task):
    loss = "cross_entropy"

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, address_bits: int = 4,
                 num_samples: int = 4096):
        if address_bits < 1:
            raise ValueError(f"address_bits={address_bits!r} must be >= 1")
        self.address_bits = int(address_bits)
        self.input_dim = self.address_bits + 2**self.address_bits
        self.output_dim = 2
        self.check_network(int(input_dim or self.input_dim), int(output_dim or 2))
        self.num_samples = int(num_samples)

    def _draw(self, task_id: int, seed: int) -> TaskData:
        g = torch.Generator().manual_seed(seed)
        bits = torch.randint(0, 2, (self.num_samples, self.input_dim), generator=g).float() * 2 - 1
        return TaskData(inputs=bits, targets=multiplexer_labels(bits, self.address_bits), task_id=task_id)

    def instance(self, task_id: int) -> TaskData:
        return self._draw(task_id, task_id)

    def test_data(self, task_id: int) -> TaskData:
        return self._draw(task_id, seed_from(task_id, TEST_STREAM))
