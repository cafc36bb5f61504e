// The per-neuron memory's GRU recurrence (policies/recurrence.py, GRUSequence), fused: every row's
// state stays in registers through the T steps, forward and backward.
//
// Row m's step t, torch's GRU equations with the input projection gx = W_ih x + b_ih given:
//     p  = keep[t, m] * h                    (keep: 0 where the row's state is zeroed before step t)
//     gh = W_hh p + b_hh                     [3 H_m], gates r, z, n in torch's order
//     r  = sigmoid(gx_r + gh_r),  z = sigmoid(gx_z + gh_z)
//     n  = tanh(gx_n + r * gh_n)
//     h' = n + z * (p - n)
// The forward writes the states before every step and after the last (history [T + 1, M, H_m]),
// gh [T, M, 3 H_m], r and z [T, M, 2 H_m] and n [T, M, H_m]; the backward carries the state's
// gradient back through the steps and writes the gradients of the gate pre-activations as the
// input projection sees them (gx's) and as gh sees them (the same but n's part times r), both
// [T, M, 3 H_m]; the weight gradients are products over all steps the caller forms (torch). Rows are independent: threads
// take contiguous ranges of rows, so the results do not depend on their number.
//
// tanh is the synapse kernel's (Eigen's rational function, about 1e-6 from std::tanh) and
// sigmoid(x) = (1 + tanh(x / 2)) / 2. Built by marl_net.policies.fused_gru with the synapse
// kernel's flags (IEEE arithmetic, no fast-math). H_m is 16, 32, 48 or 64 (HV = H_m / V vectors).
#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "simd.h"

namespace {

long g_threads = 1;

inline vf vsigmoid(vf x) { return 0.5f + 0.5f * vtanh(0.5f * x); }

// Rows [lo, hi) of the forward, step after step (each step reads and writes the rows' memory in
// order). WT: W_hh transposed, [H_m, 3 H_m].
template <int HV>
void forward_rows(long lo, long hi, long T, long M, const float *gx, const float *h0, const float *keep,
                  const float *WT, const float *b, float *history, float *gh_out, float *rz_out, float *n_out) {
    constexpr long H = HV * V;
    std::memcpy(history + lo * H, h0 + lo * H, (hi - lo) * H * sizeof(float));
    for (long t = 0; t < T; t++) {
        for (long m = lo; m < hi; m++) {
            const long row = t * M + m;
            const float k = keep ? keep[row] : 1.0f;
            vf h[HV];
            float hp[H];
            for (int j = 0; j < HV; j++) {
                h[j] = load(history + row * H + j * V) * k;
                store(hp + j * V, h[j]);
            }
            vf gh[3 * HV];
            for (int c = 0; c < 3 * HV; c++) gh[c] = load(b + c * V);
            for (long i = 0; i < H; i++) {
                const vf hi_ = splat(hp[i]);
                for (int c = 0; c < 3 * HV; c++) gh[c] += hi_ * load(WT + i * 3 * H + c * V);
            }
            const float *g = gx + row * 3 * H;
            for (int j = 0; j < HV; j++) {
                const vf r = vsigmoid(load(g + j * V) + gh[j]);
                const vf z = vsigmoid(load(g + H + j * V) + gh[HV + j]);
                const vf n = vtanh(load(g + 2 * H + j * V) + r * gh[2 * HV + j]);
                store(rz_out + row * 2 * H + j * V, r);
                store(rz_out + row * 2 * H + H + j * V, z);
                store(n_out + row * H + j * V, n);
                store(history + (row + M) * H + j * V, n + z * (h[j] - n));
            }
            for (int c = 0; c < 3 * HV; c++) store(gh_out + row * 3 * H + c * V, gh[c]);
        }
    }
}

// Rows [lo, hi) of the backward, step after step back from the last; carry [M, H_m] holds each
// row's gradient reaching the state after the step (zero before the last step, the start
// state's gradient at the end). W: W_hh, [3 H_m, H_m]. Writes the input gates' gradients dgx and
// the hidden gates' dgh, both [T, M, 3 H_m] (they differ in n's part: dgh's is r times dgx's).
template <int HV>
void backward_rows(long lo, long hi, long T, long M, const float *grad, const float *history, const float *gh,
                   const float *rz, const float *nn, const float *keep, const float *W, float *dgx_out,
                   float *dgh_out, float *carry) {
    constexpr long H = HV * V;
    std::memset(carry + lo * H, 0, (hi - lo) * H * sizeof(float));
    for (long t = T - 1; t >= 0; t--) {
        for (long m = lo; m < hi; m++) {
            const long row = t * M + m;
            const float k = keep ? keep[row] : 1.0f;
            float dg[3 * H];
            vf dz_h[HV];
            for (int j = 0; j < HV; j++) {
                const vf d = load(carry + m * H + j * V) + load(grad + row * H + j * V);
                const vf p = load(history + row * H + j * V) * k;
                const vf r = load(rz + row * 2 * H + j * V), z = load(rz + row * 2 * H + H + j * V);
                const vf n = load(nn + row * H + j * V), ghn = load(gh + row * 3 * H + 2 * H + j * V);
                const vf dpre_n = d * (1.0f - z) * (1.0f - n * n);
                const vf dpre_r = dpre_n * ghn * r * (1.0f - r);
                const vf dpre_z = d * (p - n) * z * (1.0f - z);
                store(dg + j * V, dpre_r);
                store(dg + H + j * V, dpre_z);
                store(dg + 2 * H + j * V, dpre_n * r);
                store(dgx_out + row * 3 * H + 2 * H + j * V, dpre_n);
                dz_h[j] = d * z;
            }
            std::memcpy(dgx_out + row * 3 * H, dg, 2 * H * sizeof(float));
            std::memcpy(dgh_out + row * 3 * H, dg, sizeof dg);
            for (long c = 0; c < 3 * H; c++) {
                const vf dc = splat(dg[c]);
                for (int j = 0; j < HV; j++) dz_h[j] += dc * load(W + c * H + j * V);
            }
            for (int j = 0; j < HV; j++) store(carry + m * H + j * V, dz_h[j] * k);
        }
    }
}

template <class Rows>
void split_rows(long M, const Rows &rows) {
    const long threads = std::max(1L, std::min(g_threads, M / 64));
    parallel(threads, [&](long i) { rows(M * i / threads, M * (i + 1) / threads); });
}

}  // namespace

extern "C" {

void set_threads(long threads) { g_threads = threads < 1 ? 1 : threads; }

int gru_forward(const float *gx, const float *h0, const float *keep, const float *WT, const float *b, long T,
                long M, long H, float *history, float *gh, float *rz, float *n) {
    switch (H) {
#define CASE(HV) \
    case HV * V: split_rows(M, [&](long lo, long hi) { forward_rows<HV>(lo, hi, T, M, gx, h0, keep, WT, b, history, gh, rz, n); }); return 0;
        CASE(16 / V) CASE(32 / V) CASE(48 / V) CASE(64 / V)
#undef CASE
    }
    return 1;
}

int gru_backward(const float *grad, const float *history, const float *gh, const float *rz, const float *n,
                 const float *keep, const float *W, long T, long M, long H, float *dgx, float *dgh, float *carry) {
    switch (H) {
#define CASE(HV) \
    case HV * V: split_rows(M, [&](long lo, long hi) { backward_rows<HV>(lo, hi, T, M, grad, history, gh, rz, n, keep, W, dgx, dgh, carry); }); return 0;
        CASE(16 / V) CASE(32 / V) CASE(48 / V) CASE(64 / V)
#undef CASE
    }
    return 1;
}

}  // extern "C"
