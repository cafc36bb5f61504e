// What the two CPU kernels share (synapse_kernel.cpp, gru_kernel.cpp): the host's vector type,
// Eigen's float tanh on it, and the fork-join helper of their threads. Each kernel includes it in
// its own translation unit; marl_net.native.build keys a kernel's cache on this file's text too.
#pragma once

#include <cstring>
#include <thread>
#include <vector>

namespace {

// work(t) for t = 0 .. T - 1, t = 0 on the calling thread.
template <class Work>
void parallel(long T, const Work &work) {
    if (T <= 1) return work(0);
    std::vector<std::thread> pool;
    for (long t = 1; t < T; t++) pool.emplace_back(work, t);
    work(0);
    for (auto &th : pool) th.join();
}

// Floats per vector: one register of the host, 16 with AVX-512, else 8 (on an AVX2 host 16-float
// vectors ran the synapse kernel at half torch's rate; docs/fast_path.md).
#ifdef __AVX512F__
constexpr int V = 16;
#else
constexpr int V = 8;
#endif
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

}  // namespace
