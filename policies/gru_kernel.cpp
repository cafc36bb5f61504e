// The per-neuron memory's GRU recurrence (policies/recurrence.py, GRUSequence), fused: a step's
// gates, state update and gradients for a few rows at a time, in registers, forward and backward.
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
// [T, M, 3 H_m]; the weight gradients are products over all steps the caller forms (torch). Rows are
// independent: threads take contiguous ranges of rows and a row's arithmetic does not depend on the
// rows processed with it, so the results do not depend on the number of threads.
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

// How many rows a step processes together: R times the 3 HV gate vectors forward (12 accumulator
// chains at HV = 1, 2 and 4) and R times the HV state vectors backward (8 chains at HV = 1, 2, 4
// and 8) hide the FMA latency and leave registers for the operands (AVX2 has 16) where the state
// is narrow; wide states run a row at a time, as before. Each row's arithmetic, and so its
// result, is the same whichever block it falls in (tests/test_memory.py).
template <int HV>
constexpr int forward_block() { return HV <= 4 ? 4 / HV : 1; }
template <int HV>
constexpr int backward_block() { return HV <= 8 ? 8 / HV : 1; }

// Rows [m, m + R) of the forward's step t. WT: W_hh transposed, [H_m, 3 H_m].
template <int HV, int R>
inline void forward_step(long t, long m, long M, const float *gx, const float *keep, const float *WT,
                         const float *b, float *history, float *gh_out, float *rz_out, float *n_out) {
    constexpr long H = HV * V;
    vf h[R][HV];
    float hp[R][H];
    vf gh[R][3 * HV];
    for (int r = 0; r < R; r++) {
        const long row = t * M + m + r;
        const float k = keep ? keep[row] : 1.0f;
        for (int j = 0; j < HV; j++) {
            h[r][j] = load(history + row * H + j * V) * k;
            store(hp[r] + j * V, h[r][j]);
        }
        for (int c = 0; c < 3 * HV; c++) gh[r][c] = load(b + c * V);
    }
    for (long i = 0; i < H; i++) {
        vf hi_[R];
        for (int r = 0; r < R; r++) hi_[r] = splat(hp[r][i]);
        for (int c = 0; c < 3 * HV; c++) {
            const vf w = load(WT + i * 3 * H + c * V);
            for (int r = 0; r < R; r++) gh[r][c] += hi_[r] * w;
        }
    }
    for (int r = 0; r < R; r++) {
        const long row = t * M + m + r;
        const float *g = gx + row * 3 * H;
        for (int j = 0; j < HV; j++) {
            const vf rg = vsigmoid(load(g + j * V) + gh[r][j]);
            const vf z = vsigmoid(load(g + H + j * V) + gh[r][HV + j]);
            const vf n = vtanh(load(g + 2 * H + j * V) + rg * gh[r][2 * HV + j]);
            store(rz_out + row * 2 * H + j * V, rg);
            store(rz_out + row * 2 * H + H + j * V, z);
            store(n_out + row * H + j * V, n);
            store(history + (row + M) * H + j * V, n + z * (h[r][j] - n));
        }
        for (int c = 0; c < 3 * HV; c++) store(gh_out + row * 3 * H + c * V, gh[r][c]);
    }
}

// Rows [lo, hi) of the forward, step after step (each step reads and writes the rows' memory in
// order), forward_block<HV>() rows at a time.
template <int HV>
void forward_rows(long lo, long hi, long T, long M, const float *gx, const float *h0, const float *keep,
                  const float *WT, const float *b, float *history, float *gh_out, float *rz_out, float *n_out) {
    constexpr long H = HV * V;
    constexpr int R = forward_block<HV>();
    std::memcpy(history + lo * H, h0 + lo * H, (hi - lo) * H * sizeof(float));
    for (long t = 0; t < T; t++) {
        long m = lo;
        for (; m + R <= hi; m += R) forward_step<HV, R>(t, m, M, gx, keep, WT, b, history, gh_out, rz_out, n_out);
        for (; m < hi; m++) forward_step<HV, 1>(t, m, M, gx, keep, WT, b, history, gh_out, rz_out, n_out);
    }
}

// Rows [m, m + R) of the backward's step t; carry [M, H_m] holds each row's gradient reaching the
// state after the step. W: W_hh, [3 H_m, H_m].
template <int HV, int R>
inline void backward_step(long t, long m, long M, const float *grad, const float *history, const float *gh,
                          const float *rz, const float *nn, const float *keep, const float *W, float *dgx_out,
                          float *dgh_out, float *carry) {
    constexpr long H = HV * V;
    float dg[R][3 * H];
    vf dz_h[R][HV];
    for (int q = 0; q < R; q++) {
        const long row = t * M + m + q;
        const float k = keep ? keep[row] : 1.0f;
        for (int j = 0; j < HV; j++) {
            const vf d = load(carry + (m + q) * H + j * V) + load(grad + row * H + j * V);
            const vf p = load(history + row * H + j * V) * k;
            const vf r = load(rz + row * 2 * H + j * V), z = load(rz + row * 2 * H + H + j * V);
            const vf n = load(nn + row * H + j * V), ghn = load(gh + row * 3 * H + 2 * H + j * V);
            const vf dpre_n = d * (1.0f - z) * (1.0f - n * n);
            const vf dpre_r = dpre_n * ghn * r * (1.0f - r);
            const vf dpre_z = d * (p - n) * z * (1.0f - z);
            store(dg[q] + j * V, dpre_r);
            store(dg[q] + H + j * V, dpre_z);
            store(dg[q] + 2 * H + j * V, dpre_n * r);
            store(dgx_out + row * 3 * H + 2 * H + j * V, dpre_n);
            dz_h[q][j] = d * z;
        }
        std::memcpy(dgx_out + row * 3 * H, dg[q], 2 * H * sizeof(float));
        std::memcpy(dgh_out + row * 3 * H, dg[q], sizeof dg[q]);
    }
    for (long c = 0; c < 3 * H; c++) {
        vf w[HV];
        for (int j = 0; j < HV; j++) w[j] = load(W + c * H + j * V);
        for (int q = 0; q < R; q++) {
            const vf dc = splat(dg[q][c]);
            for (int j = 0; j < HV; j++) dz_h[q][j] += dc * w[j];
        }
    }
    for (int q = 0; q < R; q++) {
        const float k = keep ? keep[t * M + m + q] : 1.0f;
        for (int j = 0; j < HV; j++) store(carry + (m + q) * H + j * V, dz_h[q][j] * k);
    }
}

// Rows [lo, hi) of the backward, step after step back from the last, backward_block<HV>() rows at
// a time; carry is zero before the last step and the start state's gradient at the end. Writes
// the input gates' gradients dgx and the hidden gates' dgh, both [T, M, 3 H_m] (they differ in n's
// part: dgh's is r times dgx's).
template <int HV>
void backward_rows(long lo, long hi, long T, long M, const float *grad, const float *history, const float *gh,
                   const float *rz, const float *nn, const float *keep, const float *W, float *dgx_out,
                   float *dgh_out, float *carry) {
    constexpr long H = HV * V;
    constexpr int R = backward_block<HV>();
    std::memset(carry + lo * H, 0, (hi - lo) * H * sizeof(float));
    for (long t = T - 1; t >= 0; t--) {
        long m = lo;
        for (; m + R <= hi; m += R)
            backward_step<HV, R>(t, m, M, grad, history, gh, rz, nn, keep, W, dgx_out, dgh_out, carry);
        for (; m < hi; m++) backward_step<HV, 1>(t, m, M, grad, history, gh, rz, nn, keep, W, dgx_out, dgh_out, carry);
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
