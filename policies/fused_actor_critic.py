"""The whole policy for PPO, learning and acting, as one fused CPU kernel (``actor_critic_*`` in
``synapse_kernel.cpp``; synapse networks of 1 to ``fused_layer.MAX_DEPTH`` layers).

PPO's learner needs, per agent of a minibatch, the log-density of the action it took and the
value. On the torch path that is a gather of the minibatch's observations, the synapse layer, then
a dozen elementwise passes over ``[agents, synapses]`` tensors (the Gaussian's mean, ``z``, its
square, the masked sum, and their backward). On the CPU the kernel reads the minibatch's rows
straight from the rollout by index and goes from observations to ``logp`` and ``value`` in one
pass, and back to every parameter's gradient in one more; torch sees three ``[agents]`` vectors.
``SynapsePolicy.log_prob_entropy_value`` chooses it where :func:`applies` and runs the torch path
otherwise; fast PPO's learner goes one step further with :func:`ppo_minibatch` (forward, the PPO
loss's gradient and backward in one pass, every layer kept rather than recomputed), and its
collection acts through :func:`sample` (the same code, drawing the actions).
``tests/test_fused_actor_critic.py`` holds all three equal to the torch path.
"""

from __future__ import annotations

import torch

from marl_net.policies import fused_layer


def applies(policy, obs: torch.Tensor) -> bool:
    """Whether :func:`log_prob_and_value` can run ``policy`` on ``obs`` (else use the torch path).
    The kernel is the feed-forward policy only: a recurrent policy (``memory="gru"``) always runs on
    the torch path."""
    if getattr(policy, "recurrent", False):
        return False
    return fused_layer.applies(obs, policy.config.hidden, policy.log_std.dtype, policy.config.depth)


def head_parameters(policy) -> torch.Tensor:
    """The policy's parameters after the synapse layer as the kernel's flat array (``Head`` in the
    source): the actor head's per-agent weights and bias, the critic's two layers, the log-std."""
    h = policy.config.hidden
    critic_in, critic_out = policy.critic[0], policy.critic[2]
    return torch.cat([policy.actor_head.weight[0, h:], policy.actor_head.bias, critic_in.weight.reshape(-1),
                      critic_in.bias, critic_out.weight.reshape(-1), critic_out.bias, policy.log_std.reshape(1)])


def _parameters(policy) -> tuple:
    """The policy's parameters as the kernel's learner takes them, in the order of the autograd
    functions' inputs: the first layer ``[F, H]``, the per-synapse readout, the head, the deeper
    layers' weights and biases."""
    return (policy.first_layer_weight().T, policy.synapse_readout_weight(), head_parameters(policy),
            *policy.deep_layers())


def _checked_index(obs: torch.Tensor, actions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``index`` as contiguous int64, after checking ``obs [S, K, F]``, ``actions [S, K]`` and that
    every index names one of the S agents."""
    if obs.dim() != 3 or actions.shape != obs.shape[:2]:
        raise ValueError(f"obs {tuple(obs.shape)} and actions {tuple(actions.shape)}: want [S, K, F] and [S, K]")
    index = index.to(torch.long).contiguous()
    if index.numel():
        low, high = (int(v) for v in torch.aminmax(index))
        if low < 0 or high >= obs.shape[0]:
            raise ValueError(f"index out of range for {obs.shape[0]} agents: pass indices in [0, {obs.shape[0]})")
    return index


class _ActorCritic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, obs, index, actions, wt, w, head, deep_w, deep_b):
        n, (k, f), h = index.numel(), obs.shape[1:], wt.shape[1]
        wt, w, head, deep_w, deep_b = (t.detach().contiguous() for t in (wt, w, head, deep_w, deep_b))
        logp, value, real = (obs.new_empty(n) for _ in range(3))
        mean, weights, mask = (obs.new_empty(n, k) for _ in range(3))
        pooled, c1 = obs.new_empty(n, h), obs.new_empty(n, h)
        fused_layer._call("actor_critic_forward", obs, index, actions, n, k, f, h,
                          *fused_layer.net_args(wt, deep_w, deep_b), w, head, logp, value, real, mean, weights, mask,
                          pooled, c1)
        ctx.save_for_backward(obs, index, actions, wt, w, head, deep_w, deep_b, mean, weights, mask, pooled, c1)
        ctx.mark_non_differentiable(real)
        return logp, value, real

    @staticmethod
    def backward(ctx, grad_logp, grad_value, _):
        obs, index, actions, wt, w, head, deep_w, deep_b, mean, weights, mask, pooled, c1 = ctx.saved_tensors
        n, (k, f), h = index.numel(), obs.shape[1:], wt.shape[1]
        grad_logp = torch.zeros_like(mean[:, 0]) if grad_logp is None else grad_logp.contiguous()
        grad_value = torch.zeros_like(mean[:, 0]) if grad_value is None else grad_value.contiguous()
        grad_wt, grad_w, grad_deep_w, grad_deep_b, grad_head = (torch.empty_like(t)
                                                                for t in (wt, w, deep_w, deep_b, head))
        fused_layer._call("actor_critic_backward", obs, index, actions, n, k, f, h,
                          *fused_layer.net_args(wt, deep_w, deep_b), w, head, mean, weights, mask, pooled, c1,
                          grad_logp, grad_value, grad_wt, grad_w, grad_deep_w, grad_deep_b, grad_head)
        return None, None, None, grad_wt, grad_w, grad_head, grad_deep_w, grad_deep_b


def log_prob_and_value(policy, obs: torch.Tensor, actions: torch.Tensor, index: torch.Tensor):
    """For the agents ``index [n]`` of ``obs [S, K, F]`` and ``actions [S, K]``: the log-density of
    their actions under ``policy``, their values and their numbers of real synapses, each ``[n]``;
    gradients flow to the policy's parameters. Check :func:`applies` first."""
    index = _checked_index(obs, actions, index)
    return _ActorCritic.apply(obs.contiguous(), index, actions.contiguous(), *_parameters(policy))


class _PPOMinibatch(torch.autograd.Function):
    """The kernel's ``ppo_minibatch``: its forward computes the gradient of PPO's minibatch loss
    (clipped surrogate plus value loss) and returns a zero "anchor" with the agents' log-densities,
    values and real synapse counts; the anchor's backward hands the gradient to the parameters."""

    @staticmethod
    def forward(ctx, obs, index, actions, old_logp, adv, returns, coef, wt, w, head, deep_w, deep_b):
        n, (k, f), h = index.numel(), obs.shape[1:], wt.shape[1]
        wt, w, head, deep_w, deep_b = (t.detach().contiguous() for t in (wt, w, head, deep_w, deep_b))
        logp, value, real = (obs.new_empty(n) for _ in range(3))
        grads = [torch.empty_like(t) for t in (wt, w, deep_w, deep_b, head)]
        fused_layer._call("ppo_minibatch", obs, index, actions, n, k, f, h, *fused_layer.net_args(wt, deep_w, deep_b),
                          w, head, old_logp, adv, returns, *coef, logp, value, real, *grads)
        ctx.save_for_backward(*grads)
        ctx.mark_non_differentiable(logp, value, real)
        return obs.new_zeros(()), logp, value, real

    @staticmethod
    def backward(ctx, grad_anchor, *_):
        grad_wt, grad_w, grad_deep_w, grad_deep_b, grad_head = (grad_anchor * g for g in ctx.saved_tensors)
        return None, None, None, None, None, None, None, grad_wt, grad_w, grad_head, grad_deep_w, grad_deep_b


def ppo_minibatch(policy, obs: torch.Tensor, actions: torch.Tensor, index: torch.Tensor, old_logp: torch.Tensor,
                  adv: torch.Tensor, returns: torch.Tensor, clip: float, vf_coef: float, scale: float):
    """PPO's minibatch loss for the agents ``index [n]`` of one block (``obs [S, K, F]``, ``actions
    [S, K]``), in one pass: ``scale * sum_n [max(-A r, -A clip(r, 1 - clip, 1 + clip)) + vf_coef
    (v - R)^2 / 2]`` with ``r = exp(logp - old_logp)``, ``A = adv`` (already normalized) and ``R =
    returns`` (all ``[n]``, in the order of ``index``). Returns ``(anchor, logp, value, real)``:
    ``anchor`` is a zero scalar whose gradient is that loss's (PPO's loss is ``anchor`` plus the
    entropy term, which depends on log_std alone); the rest ``[n]``, without gradients. Check
    :func:`applies` first; ``tests/test_fused_actor_critic.py`` holds the gradient equal to
    autograd's through :func:`log_prob_and_value`."""
    n = index.numel()
    if any(t.shape != (n,) for t in (old_logp, adv, returns)):
        raise ValueError(f"old_logp, adv and returns must be [{n}] like index")
    index = _checked_index(obs, actions, index)
    vectors = (t.detach().to(obs.dtype).contiguous() for t in (old_logp, adv, returns))
    return _PPOMinibatch.apply(obs.contiguous(), index, actions.contiguous(), *vectors,
                               (float(clip), float(vf_coef), float(scale)), *_parameters(policy))


@torch.no_grad()
def sample(policy, obs: torch.Tensor, noise: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Acting: for the agents of ``obs [N, K, F]``, write the actions
    ``(mean + exp(log_std) * noise) * mask`` into ``actions [N, K]`` (contiguous) and return their
    log-densities and values ``[N]``. ``noise [N, K]``: standard normal draws. Check
    :func:`applies` first."""
    n, k, f = obs.shape
    if noise.shape != (n, k) or actions.shape != (n, k) or not actions.is_contiguous():
        raise ValueError(f"noise {tuple(noise.shape)} and actions {tuple(actions.shape)} (contiguous) must be "
                         f"[{n}, {k}] for obs {tuple(obs.shape)}")
    h = policy.config.hidden
    logp, value = obs.new_empty(n), obs.new_empty(n)
    wt, w, head, deep_w, deep_b = _parameters(policy)
    fused_layer._call("actor_critic_sample", obs.contiguous(), noise.contiguous(), n, k, f, h,
                      *fused_layer.net_args(wt.contiguous(), deep_w, deep_b), w.contiguous(), head, actions, logp, value)
    return logp, value
