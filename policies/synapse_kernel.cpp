// The shared policy's per-synapse layer, fused: forward and backward in one pass over the
// synapse rows, with nothing of size [synapses, hidden] ever written to memory.
//
// For synapse row x (F numbers: the features, then the mask column that carries the bias),
//     h            = tanh(x @ WT)               WT: [F, H], the first layer (scales and bias folded in)
//     per_synapse  = h . w                      w: [H], the actor head's per-synapse weights
//     pooled[n]   += weights[s] * h             weights: [S], mask / (real synapses of the agent)
// Rows are S = N * K synapses of N agents, K each, row-major. The backward recomputes h rather
// than storing it, and returns dL/dWT and dL/dw.
//
// The torch reference is SynapsePolicy.encode's unfused path (policies/synapse_policy.py); tests
// hold the two equal. Built on first use by marl_net.policies.fused_layer (g++ -O3 -march=native
// -ffast-math -mrecip=all) and called through ctypes. GCC vector extensions: one vector is 16
// floats (one AVX-512 register, two AVX2 ones); H is 16, 32, 48 or 64.
#include <cstring>

namespace {

constexpr int V = 16;  // floats per vector
constexpr int G = 8;   // synapse rows processed together: independent chains keep the FPU busy
constexpr long MAX_F = 256;
typedef float vf __attribute__((vector_size(4 * V), aligned(4)));

inline vf splat(float x) { return (vf){} + x; }
inline vf load(const float *p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float *p, vf v) { std::memcpy(p, &v, sizeof v); }
inline float hsum(vf v) { float s = 0; for (int i = 0; i < V; i++) s += v[i]; return s; }

// tanh as Eigen computes it for float: a rational function on [-7.9, 7.9], saturated beyond
// (absolute error about 1e-6 against std::tanh).
inline vf vtanh(vf x) {
    const vf lim = splat(7.90531110763549805f);
    x = x > lim ? lim : x;
    x = x < -lim ? -lim : x;
    const vf x2 = x * x;
    vf p = splat(-2.76076847742355e-16f);
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    vf q = splat(1.19825839466702e-06f);
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

const float ZERO_ROW[MAX_F] = {};

struct Rows {
    const float *obs;  // [S, F]
    long S, K, F;

    // Synapse rows s0 .. s0 + G - 1 (those past S read as all-zero rows).
    void get(long s0, const float *x[G]) const {
        for (int g = 0; g < G; g++) x[g] = s0 + g < S ? obs + (s0 + g) * F : ZERO_ROW;
    }
};

// h[g] = tanh(x[g] @ WT) for G rows at once.
template <int HV>
inline void hidden(const float *const x[G], const float *WT, long F, vf h[G][HV]) {
    for (int g = 0; g < G; g++)
        for (int j = 0; j < HV; j++) h[g][j] = (vf){};
    for (long f = 0; f < F; f++) {
        vf wf[HV];
        for (int j = 0; j < HV; j++) wf[j] = load(WT + (f * HV + j) * V);
        for (int g = 0; g < G; g++) {
            const vf xf = splat(x[g][f]);
            for (int j = 0; j < HV; j++) h[g][j] += xf * wf[j];
        }
    }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < HV; j++) h[g][j] = vtanh(h[g][j]);
}

template <int HV>
void forward(const Rows &in, const float *WT, const float *w, const float *weights, long N, float *per_synapse,
             float *pooled) {
    const long S = in.S, K = in.K, F = in.F, H = HV * V;
    std::memset(pooled, 0, sizeof(float) * N * H);
    vf wv[HV], h[G][HV];
    const float *x[G];
    for (int j = 0; j < HV; j++) wv[j] = load(w + j * V);
    for (long s0 = 0; s0 < S; s0 += G) {
        in.get(s0, x);
        hidden<HV>(x, WT, F, h);
        for (int g = 0; g < G && s0 + g < S; g++) {
            const long s = s0 + g;
            vf acc = (vf){};
            float *pool = pooled + (s / K) * H;
            const vf wt = splat(weights[s]);
            for (int j = 0; j < HV; j++) {
                acc += h[g][j] * wv[j];
                store(pool + j * V, load(pool + j * V) + wt * h[g][j]);
            }
            per_synapse[s] = hsum(acc);
        }
    }
}

template <int HV>
void backward(const Rows &in, const float *WT, const float *w, const float *weights, const float *grad_synapse,
              const float *grad_pooled, float *dWT, float *dw) {
    const long S = in.S, K = in.K, F = in.F, H = HV * V;
    vf wv[HV], dwv[HV], h[G][HV];
    const float *x[G];
    for (int j = 0; j < HV; j++) wv[j] = load(w + j * V), dwv[j] = (vf){};
    for (long s0 = 0; s0 < S; s0 += G) {
        in.get(s0, x);
        hidden<HV>(x, WT, F, h);
        for (int g = 0; g < G; g++) {  // h[g] becomes dL/d(pre-activation) of row g
            const long s = s0 + g;
            if (s >= S) {
                for (int j = 0; j < HV; j++) h[g][j] = (vf){};
                continue;
            }
            const vf gs = splat(grad_synapse[s]), wt = splat(weights[s]);
            const float *gp = grad_pooled + (s / K) * H;
            for (int j = 0; j < HV; j++) {
                dwv[j] += gs * h[g][j];
                h[g][j] = (gs * wv[j] + wt * load(gp + j * V)) * (1.0f - h[g][j] * h[g][j]);
            }
        }
        for (long f = 0; f < F; f++)
            for (int j = 0; j < HV; j++) {
                vf acc = load(dWT + f * H + j * V);
                for (int g = 0; g < G; g++) acc += splat(x[g][f]) * h[g][j];
                store(dWT + f * H + j * V, acc);
            }
    }
    for (int j = 0; j < HV; j++) store(dw + j * V, dwv[j]);
}

}  // namespace

// Both return 0 on success, 1 for shapes the kernel does not cover (the caller uses torch).
// obs: [N, K, F]; weights, per_synapse, grad_synapse: [N, K]; pooled, grad_pooled: [N, H].
#define DISPATCH(CALL)                  \
    switch (H) {                        \
        case 16: CALL(1); return 0;     \
        case 32: CALL(2); return 0;     \
        case 48: CALL(3); return 0;     \
        case 64: CALL(4); return 0;     \
        default: return 1;              \
    }

extern "C" int synapse_forward(const float *obs, const float *WT, const float *w,
                               const float *weights, long N, long K, long F, long H, float *per_synapse,
                               float *pooled) {
    if (F > MAX_F) return 1;
    const Rows in{obs, N * K, K, F};
#define FORWARD(HV) forward<HV>(in, WT, w, weights, N, per_synapse, pooled)
    DISPATCH(FORWARD)
}

// Writes (not accumulates) dWT [F, H] and dw [H].
extern "C" int synapse_backward(const float *obs, const float *WT, const float *w,
                                const float *weights, const float *grad_synapse, const float *grad_pooled, long N,
                                long K, long F, long H, float *dWT, float *dw) {
    if (F > MAX_F) return 1;
    std::memset(dWT, 0, sizeof(float) * F * H);
    const Rows in{obs, N * K, K, F};
#define BACKWARD(HV) backward<HV>(in, WT, w, weights, grad_synapse, grad_pooled, dWT, dw)
    DISPATCH(BACKWARD)
}
