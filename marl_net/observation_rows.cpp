// One ownership block's observation rows, written in one pass (see marl_net/observation_rows.py).
//
// dst[e, a, k, i] for e < copies, a < agents, k < max_fan, i <= features:
//   i < features, k < fan: column_i[e, a, k], read through the column's strides (0 where it is
//                          broadcast: a global signal, a neuron's activity);
//   i == features, k < fan: 1 (the padding mask);
//   k >= fan:              0 (padding slots).
// A (copy, agent) row of max_fan * (features + 1) floats stays in L1 while its columns are
// written, so the strided writes that cost torch a trip through memory per feature cost nothing
// here. A pure copy: the values are those torch would write, bit for bit.

#include <cstring>

extern "C" int observation_block(float* dst, long copies, long agents, long max_fan, long fan, long features,
                                 long dst_copy_stride, long dst_agent_stride, const float* const* columns,
                                 const long* strides) {
  if (fan > max_fan || fan < 0 || features < 1) return 1;
  const long width = features + 1;
  for (long e = 0; e < copies; ++e) {
    for (long a = 0; a < agents; ++a) {
      float* row = dst + e * dst_copy_stride + a * dst_agent_stride;
      for (long i = 0; i < features; ++i) {
        const long* s = strides + 3 * i;  // the column's strides over (copy, agent, slot)
        const float* x = columns[i] + e * s[0] + a * s[1];
        for (long k = 0; k < fan; ++k) row[k * width + i] = x[k * s[2]];
      }
      for (long k = 0; k < fan; ++k) row[k * width + features] = 1.0f;
      std::memset(row + fan * width, 0, sizeof(float) * (max_fan - fan) * width);
    }
  }
  return 0;
}
