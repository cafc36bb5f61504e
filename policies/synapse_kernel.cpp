// The shared policy's per-synapse network, fused: forward and backward in one pass over the
// synapse rows, with nothing of size [synapses, hidden] ever written to memory.
//
// For synapse row x (F numbers: the features, then the mask column that carries the bias),
//     h            = tanh(x @ WT)               WT: [F, H], the first layer (scales and bias folded in)
//     h            = tanh(W_d h + b_d)          d = 1 .. D - 1: the deeper layers (Net), D = 1, 2 or 3
//     per_synapse  = h . w                      w: [H], the actor head's per-synapse weights
//     pooled[n]   += weights[s] * h             weights: [S], mask / (real synapses of the agent)
// Rows are S = N * K synapses of N agents, K each, row-major. The backward recomputes the layers
// (or reads them where its forward kept them), and returns every weight's gradient. The
// actor_critic_* functions below add the rest of the policy (actor head, Gaussian log-density,
// critic) for PPO's learner and acting, reading the agents' rows by index; ppo_minibatch runs a
// whole PPO minibatch, forward, the loss's gradient and backward, a chunk of agents at a time
// (marl_net.policies.fused_actor_critic).
//
// The torch reference is SynapsePolicy.encode's unfused path (policies/synapse_policy.py), and
// forward plus masked_log_prob for actor_critic_*; tests hold the two equal. Built on first use
// by marl_net.policies.fused_layer (g++ -O3 -march=native -ffp-contract=fast: IEEE arithmetic, no fast-math) and called
// through ctypes. GCC vector extensions, one vector one register of the host (simd.h); H is 16, 32,
// 48 or 64.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "simd.h"

namespace {

// Threads of ppo_minibatch and actor_critic_sample (set_threads). Their work is split so that the
// arithmetic does not depend on the count: agents are independent when acting, and a minibatch's
// gradient is summed chunk by chunk in chunk order whichever thread computed a chunk.
long g_threads = 1;

// Synapse rows processed together (independent chains keep the FPU busy), as measured on an
// AVX-512 host (8) and on an AVX2 host (16; docs/fast_path.md).
constexpr int G = V == 16 ? 8 : 16;
constexpr long MAX_F = 256;

const float ZERO_ROW[MAX_F] = {};

// The S = N * K synapse rows of N agents: agent n's K rows are obs agent index[n]'s (a minibatch
// read straight from the rollout), or agent n's when index is null.
struct Rows {
    const float *obs;  // [*, K, F]
    long S, K, F;
    std::vector<const float *> table;  // row pointers, when gathered by an index

    Rows(const float *obs_, const long *index, long N, long K_, long F_) : obs(obs_), S(N * K_), K(K_), F(F_) {
        if (!index) return;
        table.resize(S);
        for (long n = 0; n < N; n++)
            for (long k = 0; k < K; k++) table[n * K + k] = obs + (index[n] * K + k) * F;
    }
    const float *row(long s) const { return table.empty() ? obs + s * F : table[s]; }

    // Synapse rows s0 .. s0 + G - 1 (those past S read as all-zero rows). Gathered rows are
    // scattered over the rollout, beyond the hardware prefetcher's guess: ask for those PREFETCH
    // rows ahead.
    static constexpr long PREFETCH = 4 * G;
    void get(long s0, const float *x[G]) const {
        for (int g = 0; g < G; g++) x[g] = s0 + g < S ? row(s0 + g) : ZERO_ROW;
        if (!table.empty())
            for (long s = s0 + PREFETCH; s < s0 + PREFETCH + G && s < S; s++) __builtin_prefetch(table[s]);
    }
};

// The per-synapse network: a first layer over the whole observation row, WT [F, H] (the feature
// scales and the bias folded in: the bias is the weight of the mask column), then D - 1 layers
// H -> H, layer d's weight in torch's layout W_d [H out, H in] (for the backward and its
// gradient), transposed, WT_d [H in, H out] (for the forward), and its bias b_d [H]; tanh after
// every layer. D is a template parameter, so all of a row's activations can stay in registers.
struct Net {
    const float *WT;
    long F;
    const float *W, *WdT, *b;  // layers 1 .. D - 1: blocks of H * H, H * H and H floats (null when D = 1)
};

// out[g] = tanh(x[g] @ WT + bias) for G rows at once (no bias when bias is null).
template <int HV>
inline void layer(const float *const x[G], const float *WT, long F, const float *bias, vf out[G][HV]) {
    for (int g = 0; g < G; g++)
        for (int j = 0; j < HV; j++) out[g][j] = bias ? load(bias + j * V) : (vf){};
    for (long f = 0; f < F; f++) {
        vf wf[HV];
        for (int j = 0; j < HV; j++) wf[j] = load(WT + (f * HV + j) * V);
        for (int g = 0; g < G; g++) {
            const vf xf = splat(x[g][f]);
            for (int j = 0; j < HV; j++) out[g][j] += xf * wf[j];
        }
    }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < HV; j++) out[g][j] = vtanh(out[g][j]);
}

// Every layer's activations h[d] of G rows; scratch holds a layer's output as numbers for the next.
template <int HV, int D>
inline void synapse_net(const float *const x[G], const Net &net, vf h[D][G][HV], float scratch[G][HV * V]) {
    constexpr long H = HV * V;
    layer<HV>(x, net.WT, net.F, nullptr, h[0]);
    const float *xs[G];
    for (int g = 0; g < G; g++) xs[g] = scratch[g];
    for (int d = 1; d < D; d++) {
        for (int g = 0; g < G; g++)
            for (int j = 0; j < HV; j++) store(scratch[g] + j * V, h[d - 1][g][j]);
        layer<HV>(xs, net.WdT + (d - 1) * H * H, H, net.b + (d - 1) * H, h[d]);
    }
}

// Every layer's activations of a group of rows, kept between a forward and its backward (rows
// past the last, `rows` of them are real, read back as zeros): D * H numbers per row.
template <int HV, int D>
inline void store_layers(const vf h[D][G][HV], float *to, long rows) {
    for (int g = 0; g < G && g < rows; g++)
        for (int d = 0; d < D; d++)
            for (int j = 0; j < HV; j++) store(to + (g * D + d) * HV * V + j * V, h[d][g][j]);
}

template <int HV, int D>
inline void load_layers(vf h[D][G][HV], const float *from, long rows) {
    for (int g = 0; g < G; g++)
        for (int d = 0; d < D; d++)
            for (int j = 0; j < HV; j++) h[d][g][j] = g < rows ? load(from + (g * D + d) * HV * V + j * V) : (vf){};
}

// The pooling weights of agent n's rows: mask[n, k], the mask column of each synapse row;
// real[n] = sum_k mask[n, k]; weights[n, k] = mask[n, k] / max(1, real[n]) (SynapsePolicy.encode's).
struct Pooling {
    float *mask, *real, *weights;

    void derive(const Rows &in, long n) const {
        const long K = in.K, F = in.F;
        float *m = mask + n * K, r = 0;
        for (long k = 0; k < K; k++) m[k] = in.row(n * K + k)[F - 1], r += m[k];
        real[n] = r;
        const float inv = 1.0f / (r > 1.0f ? r : 1.0f);
        for (long k = 0; k < K; k++) weights[n * K + k] = m[k] * inv;
    }
};

// per_synapse [N, K] and pooled [N, H]. The pooling weights are given (weights), or, with derive,
// derived from the rows agent by agent as the pass reaches them (into derive's arrays; weights
// unused): no separate pass over the rows.
template <int HV, int D>
void forward(const Rows &in, const Net &net, const float *w, const float *weights, long N, float *per_synapse,
             float *pooled, const Pooling *derive = nullptr, float *keep = nullptr) {
    const long S = in.S, K = in.K, H = HV * V;
    std::memset(pooled, 0, sizeof(float) * N * H);
    if (derive) weights = derive->weights;
    vf wv[HV], h[D][G][HV];
    float scratch[G][HV * V];
    const float *x[G];
    for (int j = 0; j < HV; j++) wv[j] = load(w + j * V);
    // the agent of row s, kept by counting (an integer division per row costs more than the row),
    // and its pooled summary, summed in registers and written once its K rows are done
    long agent = 0, slot = 0;
    vf pool[HV] = {};
    for (long s0 = 0; s0 < S; s0 += G) {
        in.get(s0, x);
        synapse_net<HV, D>(x, net, h, scratch);
        if (keep) store_layers<HV, D>(h, keep + s0 * D * H, S - s0);
        const auto &top = h[D - 1];
        for (int g = 0; g < G && s0 + g < S; g++) {
            const long s = s0 + g;
            if (slot == 0 && derive) derive->derive(in, agent);
            vf acc = (vf){};
            const vf wt = splat(weights[s]);
            for (int j = 0; j < HV; j++) {
                acc += top[g][j] * wv[j];
                pool[j] += wt * top[g][j];
            }
            per_synapse[s] = hsum(acc);
            if (++slot == K) {
                for (int j = 0; j < HV; j++) store(pooled + agent * H + j * V, pool[j]), pool[j] = (vf){};
                slot = 0, ++agent;
            }
        }
    }
}

// Writes dWT [F, H], dw [H] and the deeper layers' dW [D - 1, H, H] (torch's layout) and db [D - 1, H].
template <int HV, int D>
void backward(const Rows &in, const Net &net, const float *w, const float *weights, const float *grad_synapse,
              const float *grad_pooled, float *dWT, float *dw, float *dW, float *db, const float *kept = nullptr) {
    const long S = in.S, K = in.K, F = in.F, H = HV * V;
    std::memset(dWT, 0, sizeof(float) * F * H);
    if (D > 1) std::memset(dW, 0, sizeof(float) * (D - 1) * H * H), std::memset(db, 0, sizeof(float) * (D - 1) * H);
    vf wv[HV], dwv[HV], h[D][G][HV], dh[G][HV];
    float scratch[G][HV * V];
    const float *x[G];
    for (int j = 0; j < HV; j++) wv[j] = load(w + j * V), dwv[j] = (vf){};
    long agent = 0, slot = 0;  // of row s
    for (long s0 = 0; s0 < S; s0 += G) {
        in.get(s0, x);
        if (kept)
            load_layers<HV, D>(h, kept + s0 * D * H, S - s0);
        else
            synapse_net<HV, D>(x, net, h, scratch);
        for (int g = 0; g < G; g++) {  // dh[g]: dL/d(top layer's output) of row g
            const long s = s0 + g;
            if (s >= S) {
                for (int j = 0; j < HV; j++) dh[g][j] = (vf){};
                continue;
            }
            const vf gs = splat(grad_synapse[s]), wt = splat(weights[s]);
            const float *gp = grad_pooled + agent * H;
            if (++slot == K) slot = 0, ++agent;
            for (int j = 0; j < HV; j++) {
                dwv[j] += gs * h[D - 1][g][j];
                dh[g][j] = gs * wv[j] + wt * load(gp + j * V);
            }
        }
        for (int d = D - 1; d >= 1; d--) {  // through layer d: dh becomes dL/d(layer d - 1's output)
            float *dWd = dW + (d - 1) * H * H, *dbd = db + (d - 1) * H;
            const float *Wd = net.W + (d - 1) * H * H;
            vf dprev[G][HV] = {};
            for (int j = 0; j < HV; j++) {
                vf bias_acc = load(dbd + j * V);
                for (int g = 0; g < G; g++) {
                    dh[g][j] *= 1.0f - h[d][g][j] * h[d][g][j];  // dL/d(pre-activation)
                    bias_acc += dh[g][j];
                    store(scratch[g] + j * V, dh[g][j]);
                }
                store(dbd + j * V, bias_acc);
            }
            for (long o = 0; o < H; o++) {  // output unit o: dW_d[o] += dpre_o h_{d-1}; dprev += dpre_o W_d[o]
                vf wo[HV], acc[HV];
                for (int i = 0; i < HV; i++) wo[i] = load(Wd + o * H + i * V), acc[i] = load(dWd + o * H + i * V);
                for (int g = 0; g < G; g++) {
                    const vf dpo = splat(scratch[g][o]);
                    for (int i = 0; i < HV; i++) acc[i] += dpo * h[d - 1][g][i], dprev[g][i] += dpo * wo[i];
                }
                for (int i = 0; i < HV; i++) store(dWd + o * H + i * V, acc[i]);
            }
            for (int g = 0; g < G; g++)
                for (int j = 0; j < HV; j++) dh[g][j] = dprev[g][j];
        }
        for (int g = 0; g < G; g++)  // the first layer's pre-activation
            for (int j = 0; j < HV; j++) dh[g][j] *= 1.0f - h[0][g][j] * h[0][g][j];
        for (long f = 0; f < F; f++)
            for (int j = 0; j < HV; j++) {
                vf acc = load(dWT + f * H + j * V);
                for (int g = 0; g < G; g++) acc += splat(x[g][f]) * dh[g][j];
                store(dWT + f * H + j * V, acc);
            }
    }
    for (int j = 0; j < HV; j++) store(dw + j * V, dwv[j]);
}

// ---------------------------------------------------------------- the whole policy, for PPO
// The rest of SynapsePolicy.forward after the synapse network, per agent, plus the
// log-density of the agent's action (masked_log_prob) and the value: everything the PPO loss
// needs from the policy, one pass, nothing of size [synapses, hidden] stored. With K slots and
// the mask column m_k of each synapse row:
//     pa     = wa . pooled + ba                            the actor head's per-agent term
//     mean_k = (per_synapse_k + pa) m_k
//     logp   = sum_k m_k (-z_k^2 / 2 - log_std - log sqrt(2 pi)),  z_k = (a_k - mean_k) exp(-log_std)
//     value  = wc2 . tanh(Wc pooled + bc) + bc2             the critic
// The head's parameters come as one flat array P (layout below); its gradient dP likewise.
struct Head {
    long H;
    const float *P;
    const float *wa() const { return P; }
    float ba() const { return P[H]; }
    const float *Wc() const { return P + H + 1; }  // [H, H], torch's Linear layout (out, in)
    const float *bc() const { return P + H + 1 + H * H; }
    const float *wc2() const { return P + 2 * H + 1 + H * H; }
    float bc2() const { return P[3 * H + 1 + H * H]; }
    float log_std() const { return P[3 * H + 2 + H * H]; }
    static long size(long H) { return H * H + 3 * H + 3; }
};

constexpr float LOG_SQRT_2PI = 0.918938533204672742f;

// The head's vectors (H = HV * V) loaded once per call; the critic's first layer both ways round.
template <int HV>
struct HeadV {
    vf wa[HV], bc[HV], wc2[HV], Wc[HV * V][HV], WcT[HV * V][HV];  // Wc[j]: row j (over inputs); WcT[i]: column i

    explicit HeadV(const Head &hd) {
        const long H = HV * V;
        for (int j = 0; j < HV; j++) wa[j] = load(hd.wa() + j * V), bc[j] = load(hd.bc() + j * V),
                                     wc2[j] = load(hd.wc2() + j * V);
        float col[HV * V];
        for (long i = 0; i < H; i++) {
            for (int j = 0; j < HV; j++) Wc[i][j] = load(hd.Wc() + i * H + j * V);
            for (long j = 0; j < H; j++) col[j] = hd.Wc()[j * H + i];
            for (int j = 0; j < HV; j++) WcT[i][j] = load(col + j * V);
        }
    }
};

constexpr int AG = 8;  // agents processed together in the head: independent chains keep the FPU busy

// sum_k m_k (-z_k^2 / 2 - log_std - log sqrt(2 pi)), z_k = (a_k - mean_k) / std
inline float log_prob(long K, const float *__restrict a, const float *__restrict mean, const float *__restrict mask,
                      float inv_std, float ls) {
    float lp = 0;
    for (long k = 0; k < K; k++) {
        const float z = (a[k] - mean[k]) * inv_std;
        lp += mask[k] * (-0.5f * z * z - ls - LOG_SQRT_2PI);
    }
    return lp;
}

template <int HV, int D>
void actor_critic_forward(const Rows &in, const float *actions, const long *index, long N, const Net &net,
                          const float *w, const Head &hd, float *logp, float *value, float *real, float *mean,
                          float *weights, float *pooled, float *c1, float *mask, const float *noise = nullptr,
                          float *sampled = nullptr, float *keep = nullptr) {
    const long K = in.K, H = HV * V;
    const Pooling pooling{mask, real, weights};
    forward<HV, D>(in, net, w, nullptr, N, mean, pooled, &pooling, keep);  // mean: the per-synapse terms for now
    const HeadV<HV> hv(hd);
    const float ls = hd.log_std(), inv_std = std::exp(-ls), std_ = std::exp(ls);
    for (long n0 = 0; n0 < N; n0 += AG) {
        const int na = N - n0 < AG ? int(N - n0) : AG;
        const float *p[AG];
        vf acc[AG], pre[AG][HV];
        for (int g = 0; g < AG; g++) {
            p[g] = g < na ? pooled + (n0 + g) * H : ZERO_ROW;
            acc[g] = (vf){};
            for (int j = 0; j < HV; j++) acc[g] += hv.wa[j] * load(p[g] + j * V), pre[g][j] = hv.bc[j];
        }
        for (long i = 0; i < H; i++)
            for (int g = 0; g < AG; g++) {
                const vf pi = splat(p[g][i]);
                for (int j = 0; j < HV; j++) pre[g][j] += pi * hv.WcT[i][j];
            }
        for (int g = 0; g < na; g++) {
            const long n = n0 + g;
            vf v = (vf){};
            for (int j = 0; j < HV; j++) {
                const vf h1 = vtanh(pre[g][j]);
                store(c1 + n * H + j * V, h1);
                v += hv.wc2[j] * h1;
            }
            value[n] = hsum(v) + hd.bc2();
            const float pa = hsum(acc[g]) + hd.ba();
            float *mn = mean + n * K;
            const float *m = mask + n * K;
            for (long k = 0; k < K; k++) mn[k] = (mn[k] + pa) * m[k];
            const float *a = actions + (index ? index[n] : n) * K;
            if (noise) {  // acting: draw the action
                float *s = sampled + n * K;
                for (long k = 0; k < K; k++) s[k] = (mn[k] + std_ * noise[n * K + k]) * m[k];
                a = s;
            }
            logp[n] = log_prob(K, a, mn, m, inv_std, ls);
        }
    }
}

template <int HV, int D>
void actor_critic_backward(const Rows &in, const float *actions, const long *index, long N, const Net &net,
                           const float *w, const Head &hd, const float *mean, const float *weights,
                           const float *mask, const float *pooled, const float *c1, const float *glogp,
                           const float *gvalue, float *dWT, float *dw, float *dW, float *db, float *dP,
                           const float *kept = nullptr) {
    const long K = in.K, H = HV * V;
    const HeadV<HV> hv(hd);
    std::vector<float> dps(N * K), dpooled(N * H);
    vf dwa[HV] = {}, dbc[HV] = {}, dwc2[HV] = {}, dWcT[HV * V][HV] = {};  // dWcT[i]: column i of dWc
    double dba = 0, dbc2 = 0, dls = 0;
    const float inv_std = std::exp(-hd.log_std());
    for (long n0 = 0; n0 < N; n0 += AG) {
        const int na = N - n0 < AG ? int(N - n0) : AG;
        const float *p[AG];
        vf dpre[AG][HV], dp[AG][HV];
        for (int g = 0; g < AG; g++) {
            const long n = n0 + g;
            p[g] = g < na ? pooled + n * H : ZERO_ROW;
            if (g >= na) {
                for (int j = 0; j < HV; j++) dpre[g][j] = dp[g][j] = (vf){};
                continue;
            }
            const float gl = glogp[n], gv = gvalue[n], *h1 = c1 + n * H, *m = mask + n * K, *mn = mean + n * K;
            const float *a = actions + (index ? index[n] : n) * K;
            float dpa = 0, ds = 0;
            for (long k = 0; k < K; k++) {
                const float z = (a[k] - mn[k]) * inv_std, dm = gl * m[k] * z * inv_std * m[k];  // mean_k = (.. + pa) m_k
                dps[n * K + k] = dm;
                dpa += dm;
                ds += gl * m[k] * (z * z - 1.0f);
            }
            dls += ds, dba += dpa, dbc2 += gv;
            const vf vpa = splat(dpa), vgv = splat(gv);
            for (int j = 0; j < HV; j++) {
                const vf pj = load(p[g] + j * V), hj = load(h1 + j * V);
                dwa[j] += vpa * pj;
                dp[g][j] = vpa * hv.wa[j];
                dwc2[j] += vgv * hj;
                dpre[g][j] = vgv * hv.wc2[j] * (1.0f - hj * hj);
                dbc[j] += dpre[g][j];
            }
        }
        for (long i = 0; i < H; i++) {  // dWc[:, i] += dpre p_i; dp += dpre_i Wc[i]
            vf col[HV] = {};
            for (int g = 0; g < AG; g++) {
                const vf pi = splat(p[g][i]), di = splat(dpre[g][i / V][i % V]);
                for (int j = 0; j < HV; j++) col[j] += pi * dpre[g][j], dp[g][j] += di * hv.Wc[i][j];
            }
            for (int j = 0; j < HV; j++) dWcT[i][j] += col[j];
        }
        for (int g = 0; g < na; g++)
            for (int j = 0; j < HV; j++) store(dpooled.data() + (n0 + g) * H + j * V, dp[g][j]);
    }
    float *dwa_ = dP, *dWc_ = dP + H + 1, *dbc_ = dWc_ + H * H, *dwc2_ = dbc_ + H;
    for (int j = 0; j < HV; j++) store(dwa_ + j * V, dwa[j]), store(dbc_ + j * V, dbc[j]), store(dwc2_ + j * V, dwc2[j]);
    for (long i = 0; i < H; i++)
        for (long j = 0; j < H; j++) dWc_[j * H + i] = dWcT[i][j / V][j % V];
    dP[H] = float(dba), dP[3 * H + 1 + H * H] = float(dbc2), dP[3 * H + 2 + H * H] = float(dls);
    backward<HV, D>(in, net, w, weights, dps.data(), dpooled.data(), dWT, dw, dW, db, kept);
}

// ---------------------------------------------------------------- a PPO minibatch, one pass
// The gradient of PPO's minibatch loss (clipped surrogate plus value loss; the entropy term
// depends on log_std alone and stays in torch) for N agents of one ownership block:
//     L = scale * sum_n [ max(-A_n r_n, -A_n clip(r_n, 1 - c, 1 + c)) + vf_coef (v_n - R_n)^2 / 2 ]
// with r_n = exp(logp_n - old_logp_n) and A_n the advantage as normalized over the minibatch.
// Agents go a chunk at a time through the forward, the loss's gradient and the backward: the
// forward keeps every layer's activations for the backward (nothing recomputed), and the backward
// reads rows the forward has just brought into cache (one trip through the rollout, not two).
// dL/dlogp_n = -scale A_n r_n where the unclipped term is the larger or r_n is inside the clip
// range (torch.max passes the gradient to the larger term and splits ties), else 0.
struct PPOLoss {
    float clip, vf_coef, scale;  // scale: 1 / (agents in the whole minibatch, every block)
};

constexpr long CHUNK_ROWS = 1024;  // synapse rows per chunk: their layers (D * H numbers each) stay in L2

template <int HV, int D>
void ppo_minibatch(const Rows &in, const float *actions, const long *index, long N, const Net &net, const float *w,
                   const Head &hd, const float *old_logp, const float *adv, const float *returns, PPOLoss loss,
                   float *logp, float *value, float *real, float *dWT, float *dw, float *dW, float *db, float *dP) {
    const long K = in.K, F = in.F, H = HV * V, nP = Head::size(H), nW = (D - 1) * H * H, nb = (D - 1) * H;
    const long CHUNK = K < CHUNK_ROWS ? CHUNK_ROWS / K : 1;  // agents per chunk
    const long chunks = (N + CHUNK - 1) / CHUNK;
    // each chunk's gradient, in Head-then-network blocks: WT, w, W (+1), b (+1), P
    const long oWT = 0, ow = F * H, oW = ow + H, ob = oW + nW + 1, oP = ob + nb + 1, size = oP + nP;
    std::vector<float> grads(chunks * size);
    parallel(std::min(g_threads, chunks), [&](long t) {
        const long T = std::min(g_threads, chunks);
        std::vector<float> mean(CHUNK * K), weights(CHUNK * K), mask(CHUNK * K), pooled(CHUNK * H), c1(CHUNK * H),
            glogp(CHUNK), gvalue(CHUNK), layers(CHUNK * K * D * H);
        for (long c = t; c < chunks; c += T) {
            const long n0 = c * CHUNK, nc = N - n0 < CHUNK ? N - n0 : CHUNK;
            const Rows chunk(index ? in.obs : in.obs + n0 * K * F, index ? index + n0 : nullptr, nc, K, F);
            const float *acts = index ? actions : actions + n0 * K;
            const long *idx = index ? index + n0 : nullptr;
            actor_critic_forward<HV, D>(chunk, acts, idx, nc, net, w, hd, logp + n0, value + n0, real + n0,
                                        mean.data(), weights.data(), pooled.data(), c1.data(), mask.data(), nullptr,
                                        nullptr, layers.data());
            for (long i = 0; i < nc; i++) {
                const long n = n0 + i;
                const float A = adv[n], r = std::exp(logp[n] - old_logp[n]);
                const float lo = 1.0f - loss.clip, hi = 1.0f + loss.clip, rc = r < lo ? lo : (r > hi ? hi : r);
                const bool through = (r >= lo && r <= hi) || -A * r > -A * rc;
                glogp[i] = through ? -loss.scale * A * r : 0.0f;
                gvalue[i] = loss.scale * loss.vf_coef * (value[n] - returns[n]);
            }
            float *g = grads.data() + c * size;
            actor_critic_backward<HV, D>(chunk, acts, idx, nc, net, w, hd, mean.data(), weights.data(), mask.data(),
                                         pooled.data(), c1.data(), glogp.data(), gvalue.data(), g + oWT, g + ow,
                                         g + oW, g + ob, g + oP, layers.data());
        }
    });
    std::memset(dWT, 0, sizeof(float) * F * H), std::memset(dw, 0, sizeof(float) * H);
    std::memset(dP, 0, sizeof(float) * nP);
    if (D > 1) std::memset(dW, 0, sizeof(float) * nW), std::memset(db, 0, sizeof(float) * nb);
    auto add = [](float *to, const float *from, long n) {
        for (long i = 0; i < n; i++) to[i] += from[i];
    };
    for (long c = 0; c < chunks; c++) {  // in chunk order, whatever the threads
        const float *g = grads.data() + c * size;
        add(dWT, g + oWT, F * H), add(dw, g + ow, H), add(dP, g + oP, nP);
        if (D > 1) add(dW, g + oW, nW), add(db, g + ob, nb);
    }
}

}  // namespace

// Every entry point returns 0 on success, 1 for shapes the kernel does not cover (the caller then
// uses torch). The synapse network (Net): WT [F, H]; for depth D > 1 also W, WdT [D - 1, H, H]
// and b [D - 1, H] (null when D = 1). obs: [N, K, F]; weights, per_synapse, grad_synapse:
// [N, K]; pooled, grad_pooled: [N, H].
#define DISPATCH_D(CALL, HV)                    \
    switch (D) {                                \
        case 1: CALL(HV, 1); return 0;          \
        case 2: CALL(HV, 2); return 0;          \
        case 3: CALL(HV, 3); return 0;          \
        default: return 1;                      \
    }
#define DISPATCH(CALL)                          \
    if (F > MAX_F) return 1;                    \
    switch (H) {                                \
        case 16: DISPATCH_D(CALL, 16 / V)       \
        case 32: DISPATCH_D(CALL, 32 / V)       \
        case 48: DISPATCH_D(CALL, 48 / V)       \
        case 64: DISPATCH_D(CALL, 64 / V)       \
        default: return 1;                      \
    }
#define NET_ARGS const float *WT, long D, const float *W, const float *WdT, const float *b

extern "C" int synapse_forward(const float *obs, NET_ARGS, const float *w, const float *weights, long N, long K, long F,
                               long H, float *per_synapse, float *pooled) {
    const Rows in(obs, nullptr, N, K, F);
    const Net net{WT, F, W, WdT, b};
#define FORWARD(HV, D_) forward<HV, D_>(in, net, w, weights, N, per_synapse, pooled)
    DISPATCH(FORWARD)
}

// Writes (not accumulates) dWT [F, H], dw [H], dW [D - 1, H, H] and db [D - 1, H].
extern "C" int synapse_backward(const float *obs, NET_ARGS, const float *w, const float *weights,
                                const float *grad_synapse, const float *grad_pooled, long N, long K, long F, long H,
                                float *dWT, float *dw, float *dW, float *db) {
    const Rows in(obs, nullptr, N, K, F);
    const Net net{WT, F, W, WdT, b};
#define BACKWARD(HV, D_) backward<HV, D_>(in, net, w, weights, grad_synapse, grad_pooled, dWT, dw, dW, db)
    DISPATCH(BACKWARD)
}

// The whole policy for PPO (see actor_critic_forward): obs [*, K, F] and actions [*, K] read at
// the N agents index[N] (null: the first N); writes logp, value, real [N] and, for the backward,
// mean, weights, mask [N, K], pooled, c1 [N, H]. P: the head's flat parameters (Head).
extern "C" int actor_critic_forward(const float *obs, const long *index, const float *actions, long N, long K,
                                    long F, long H, NET_ARGS, const float *w, const float *P, float *logp,
                                    float *value, float *real, float *mean, float *weights, float *mask,
                                    float *pooled, float *c1) {
    const Rows in(obs, index, N, K, F);
    const Net net{WT, F, W, WdT, b};
    const Head hd{H, P};
#define AC_FORWARD(HV, D_) \
    actor_critic_forward<HV, D_>(in, actions, index, N, net, w, hd, logp, value, real, mean, weights, pooled, c1, mask)
    DISPATCH(AC_FORWARD)
}

// Acting (no gradients): the actions (mean + exp(log_std) noise) m of the N agents of obs
// [N, K, F], given noise [N, K], written to actions [N, K], with their logp and value [N].
// Agents are independent here: set_threads' threads take contiguous ranges of them.
extern "C" int actor_critic_sample(const float *obs, const float *noise, long N, long K, long F, long H, NET_ARGS,
                                   const float *w, const float *P, float *actions, float *logp, float *value) {
    const Net net{WT, F, W, WdT, b};
    const Head hd{H, P};
    const long T = std::max(1L, std::min(g_threads, N / 64));  // at least 64 agents a thread
    std::vector<float> real(N), mean(N * K), weights(N * K), mask(N * K), pooled(N * H), c1(N * H);
#define AC_SAMPLE(HV, D_)                                                                                          \
    parallel(T, [&](long t) {                                                                                      \
        const long lo = t * N / T, n = (t + 1) * N / T - lo;                                                       \
        const Rows in(obs + lo * K * F, nullptr, n, K, F);                                                         \
        actor_critic_forward<HV, D_>(in, nullptr, nullptr, n, net, w, hd, logp + lo, value + lo, real.data() + lo, \
                                     mean.data() + lo * K, weights.data() + lo * K, pooled.data() + lo * H,        \
                                     c1.data() + lo * H, mask.data() + lo * K, noise + lo * K, actions + lo * K);  \
    })
    DISPATCH(AC_SAMPLE)
}

extern "C" void set_threads(long threads) { g_threads = threads < 1 ? 1 : threads; }

// Gradients of sum(glogp * logp + gvalue * value): writes dWT [F, H], dw [H], dW [D - 1, H, H],
// db [D - 1, H] and dP (Head's layout).
extern "C" int actor_critic_backward(const float *obs, const long *index, const float *actions, long N, long K,
                                     long F, long H, NET_ARGS, const float *w, const float *P,
                                     const float *mean, const float *weights, const float *mask,
                                     const float *pooled, const float *c1, const float *glogp, const float *gvalue,
                                     float *dWT, float *dw, float *dW, float *db, float *dP) {
    const Rows in(obs, index, N, K, F);
    const Net net{WT, F, W, WdT, b};
    const Head hd{H, P};
#define AC_BACKWARD(HV, D_)                                                                                   \
    actor_critic_backward<HV, D_>(in, actions, index, N, net, w, hd, mean, weights, mask, pooled, c1, glogp,  \
                                  gvalue, dWT, dw, dW, db, dP)
    DISPATCH(AC_BACKWARD)
}

// The gradient of PPO's minibatch loss (ppo_minibatch) for the N agents index[N] of obs [*, K, F]
// and actions [*, K]; old_logp, adv (normalized), returns: [N], in the order of index. Writes
// logp, value, real [N] and the gradients as actor_critic_backward does.
extern "C" int ppo_minibatch(const float *obs, const long *index, const float *actions, long N, long K, long F, long H,
                             NET_ARGS, const float *w, const float *P, const float *old_logp, const float *adv,
                             const float *returns, float clip, float vf_coef, float scale, float *logp, float *value,
                             float *real, float *dWT, float *dw, float *dW, float *db, float *dP) {
    const Rows in(obs, nullptr, N, K, F);  // the shape only: each chunk gathers its own rows by index
    const Net net{WT, F, W, WdT, b};
    const Head hd{H, P};
    const PPOLoss loss{clip, vf_coef, scale};
#define PPO_MINIBATCH(HV, D_)                                                                                    \
    ppo_minibatch<HV, D_>(in, actions, index, N, net, w, hd, old_logp, adv, returns, loss, logp, value, real, dWT, \
                          dw, dW, db, dP)
    DISPATCH(PPO_MINIBATCH)
}
