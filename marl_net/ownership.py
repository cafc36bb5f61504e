"""Which agent owns which weights, and the map between weight space and agent space.

*Weight space* is a list with one tensor per weight layer, shaped like the layer's (augmented)
weights ``[E, n_{l+1}, n_l (+1 bias column)]`` followed by any trailing feature dimensions.
*Agent space* comes in two layouts. *Padded*: one tensor ``[E, A, K, ...]``, A agents, each with
K = the largest fan synapse slots; slots past an agent's fan are padding (``mask`` is False there,
values are zero). It gives every agent one shape (the PettingZoo env's one space per agent).
*Blocks*: a list with one tensor ``[E, agents_b, fan_b, ...]`` per ownership block (the agents of
one weight layer, who share a fan), no padding: its size is the number of synapses, whatever the
fans (on 10-1000-10 under outgoing ownership the padded table holds 50x more slots).

- ``outgoing`` (Cai & Cheng): neuron i of layer l owns column i of ``W_l``, its outgoing weights.
  Agents are the neurons of layers 0..L-1.
- ``incoming`` (Chung): neuron j of layer l+1 owns row j of ``W_l`` (and its bias, when the
  network has biases). Agents are the neurons of layers 1..L.

Agent ids follow PettingZoo's ``name_<int>`` convention: ``neuron_<k>``, k counting every neuron of
the network from the first input, so an id names the same neuron under either ownership.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marl_net.network import NetworkSpec

OWNERSHIPS = {
    "outgoing": "neuron i of layer l controls column i of W_l, its outgoing weights (Cai & Cheng)",
    "incoming": "neuron j of layer l+1 controls row j of W_l, its incoming weights and bias (Chung)",
}


@dataclass(frozen=True)
class LayerBlock:
    """The agents of one weight layer: agents ``[start, stop)`` each own ``fan`` synapses."""

    layer: int
    start: int
    stop: int
    fan: int
    first_neuron: int  # global index of the block's first neuron


class Ownership:
    def __init__(self, spec: NetworkSpec, mode: str = "outgoing"):
        if mode not in OWNERSHIPS:
            raise ValueError(f"ownership={mode!r} is unknown; choose one of {sorted(OWNERSHIPS)}")
        if spec.bias and mode == "outgoing":
            raise ValueError("bias=True needs ownership='incoming': under outgoing ownership no neuron owns a bias")
        self.spec = spec
        self.mode = mode
        sizes = spec.layers
        neuron_offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        blocks, start = [], 0
        for l in range(spec.num_layers):
            if mode == "outgoing":
                count, fan, first = sizes[l], sizes[l + 1], neuron_offsets[l]
            else:
                count, fan, first = sizes[l + 1], sizes[l] + int(spec.bias), neuron_offsets[l + 1]
            blocks.append(LayerBlock(l, start, start + count, fan, first))
            start += count
        self.blocks: tuple[LayerBlock, ...] = tuple(blocks)
        self.num_agents = start
        self.max_fan = max(b.fan for b in blocks)
        mask = torch.zeros(self.num_agents, self.max_fan, dtype=torch.bool)
        layer_of_agent = torch.empty(self.num_agents, dtype=torch.long)
        for b in blocks:
            mask[b.start : b.stop, : b.fan] = True
            layer_of_agent[b.start : b.stop] = b.layer
        self.mask = mask
        self.layer_of_agent = layer_of_agent
        self.agent_ids: tuple[str, ...] = tuple(
            f"neuron_{b.first_neuron + i}" for b in blocks for i in range(b.stop - b.start)
        )
        self.index_of = {name: i for i, name in enumerate(self.agent_ids)}

    def weight_space_shape(self, layer: int) -> tuple[int, int]:
        """``(rows, cols)`` of layer ``layer`` in weight space (cols include the bias column)."""
        n_in, n_out = self.spec.layers[layer], self.spec.layers[layer + 1]
        return n_out, n_in + int(self.spec.bias)

    def block_layout(self, x: torch.Tensor) -> torch.Tensor:
        """One layer in weight space ``[E, rows, cols, ...]`` <-> its agents' block ``[E, agents,
        fan, ...]`` (a transpose under outgoing ownership, the identity under incoming; its own inverse)."""
        return x.transpose(1, 2) if self.mode == "outgoing" else x

    def to_agents(self, per_layer: list[torch.Tensor]) -> torch.Tensor:
        """Weight space ``[E, rows, cols, *extra]`` per layer -> agent space ``[E, A, K, *extra]``."""
        first = per_layer[0]
        e, extra = first.shape[0], tuple(first.shape[3:])
        out = first.new_zeros((e, self.num_agents, self.max_fan, *extra))
        for b, x in zip(self.blocks, per_layer):
            out[:, b.start : b.stop, : b.fan] = self.block_layout(x)
        return out

    def from_agents(self, agents: torch.Tensor) -> list[torch.Tensor]:
        """Agent space ``[E, A, K, *extra]`` -> weight space per layer (padding dropped)."""
        per_layer = []
        for b in self.blocks:
            per_layer.append(self.block_layout(agents[:, b.start : b.stop, : b.fan]))
        return per_layer

    def from_blocks(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Block layout ``[E, agents_b, fan_b, *extra]`` per block -> weight space per layer (views;
        the map is its own inverse, so it also takes weight space to the block layout)."""
        return [self.block_layout(x) for x in blocks]

    def padded_to_blocks(self, agents: torch.Tensor) -> list[torch.Tensor]:
        """Padded ``[E, A, K, *extra]`` -> the block layout (views, padding dropped)."""
        return [agents[:, b.start : b.stop, : b.fan] for b in self.blocks]

    def blocks_to_padded(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """The block layout -> padded ``[E, A, K, *extra]`` (padding slots zero)."""
        first = blocks[0]
        out = first.new_zeros((first.shape[0], self.num_agents, self.max_fan, *first.shape[3:]))
        for b, x in zip(self.blocks, blocks):
            out[:, b.start : b.stop, : b.fan] = x
        return out

    def block_shapes(self, copies: int, *extra: int) -> list[tuple[int, ...]]:
        """The shapes of the block layout for ``copies`` copies: ``(copies, agents_b, fan_b, *extra)``."""
        return [(copies, b.stop - b.start, b.fan, *extra) for b in self.blocks]

    def neuron_values_to_agents(self, per_layer: list[torch.Tensor]) -> torch.Tensor:
        """Per-agent values given per block as ``[E, count_l]`` -> ``[E, A]``."""
        return torch.cat(per_layer, dim=1)
