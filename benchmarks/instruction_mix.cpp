// Throughput of the AVX2 instruction mixes our int8 kernels are built from, on this CPU: which of them share
// execution ports, so what a kernel's inner step can cost at best. Each mix runs on 8 independent chains (enough
// to hide latencies), kept in registers; the time is per mix on all 8 chains.
//
//     g++ -O2 -mavx2 -mfma benchmarks/instruction_mix.cpp -o /tmp/instruction_mix && /tmp/instruction_mix
//
// Cycles are counted against the float32 FMA row, taken as two FMAs per cycle (Zen 3, Skylake and later).
#include <immintrin.h>

#include <chrono>
#include <cstdio>

namespace {

constexpr long kIterations = 50'000'000;

// Best of 3 timings of `step` applied to each of eight chains, in ns per iteration.
template <typename Step>
double time_mix(Step step) {
  __m256i a0 = _mm256_set1_epi32(1), a1 = _mm256_set1_epi32(2), a2 = _mm256_set1_epi32(3), a3 = _mm256_set1_epi32(4);
  __m256i a4 = _mm256_set1_epi32(5), a5 = _mm256_set1_epi32(6), a6 = _mm256_set1_epi32(7), a7 = _mm256_set1_epi32(8);
  double best = 1e30;
  for (int round = 0; round < 3; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < kIterations; ++i) {
      a0 = step(a0), a1 = step(a1), a2 = step(a2), a3 = step(a3), a4 = step(a4), a5 = step(a5), a6 = step(a6), a7 = step(a7);
      // The chains stay in registers and each iteration is really computed.
      asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = seconds < best ? seconds : best;
  }
  return best / kIterations * 1e9;
}

}  // namespace

int main() {
  __m256i bytes = _mm256_set1_epi8(-2), words = _mm256_set1_epi16(-2), ones = _mm256_set1_epi16(1);
  asm volatile("" : "+x"(bytes), "+x"(words), "+x"(ones));  // not constants the compiler could fold
  struct Row {
    const char* name;
    double ns;
  } rows[] = {
      {"vfmadd (float32)", time_mix([&](__m256i a) {
         return _mm256_castps_si256(_mm256_fmadd_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(words), _mm256_castsi256_ps(ones)));
       })},
      {"vpaddd", time_mix([&](__m256i a) { return _mm256_add_epi32(a, bytes); })},
      {"vpmaddwd", time_mix([&](__m256i a) { return _mm256_madd_epi16(a, words); })},
      {"vpmaddubsw", time_mix([&](__m256i a) { return _mm256_maddubs_epi16(a, bytes); })},
      {"vpsignb", time_mix([&](__m256i a) { return _mm256_sign_epi8(a, bytes); })},
      {"vpabsb", time_mix([&](__m256i a) { return _mm256_abs_epi8(a); })},
      {"int16 step: vpmaddwd + vpaddd", time_mix([&](__m256i a) { return _mm256_add_epi32(a, _mm256_madd_epi16(a, words)); })},
      {"int8 step: vpmaddubsw + vpmaddwd + vpaddd", time_mix([&](__m256i a) {
         return _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(a, bytes), ones));
       })},
      {"exact int8 step: vpsignb + the above", time_mix([&](__m256i a) {
         return _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(bytes, _mm256_sign_epi8(a, bytes)), ones));
       })},
  };
  const double cycle = rows[0].ns / 4;  // 8 FMAs at 2 per cycle
  std::printf("%-44s %10s %16s\n", "mix (8 independent chains)", "ns", "cycles per mix");
  for (const Row& r : rows) std::printf("%-44s %10.3f %16.2f\n", r.name, r.ns, r.ns / cycle / 8);
}
