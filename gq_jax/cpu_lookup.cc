// The codebook lookup of a resident GQ weight on an x86 CPU with AVX-512: an XLA FFI handler.
//
// out[j] = table[index(j)] * scale[j mod C]   for j = 0 .. N - 1,
//
// with index(j) = sum over planes p of ((plane_p[j mod B_p] >> (w_p * (j div B_p))) & (2^w_p - 1)) << o_p:
// the strided bit planes of `gq_jax.runtime.pack_planes` (width w_p, B_p bytes, digit offset o_p),
// table [2^bits] float32, scale [C] float32 (C = 1 for one scale per tensor, else the last axis).
// The output is cut into stretches in which every plane's digits come from consecutive bytes at one
// shift and the scales are consecutive; in a stretch, 16 weights at a time: the 16 indices assembled
// from each plane's 16 bytes (shift, mask, or), widened once to 32-bit lanes and looked up by one
// register permute (vpermps for <= 4 bits, vpermi2ps for 5; wider indices are left to XLA, whose
// gather beats 2^(b-5) permutes), then scaled. At 5 bits a weight reads 5/8 of the bytes of an
// 8-bit one. The work is split over XLA's intra-op thread pool. The products are the float32 ones of
// `PackedArray.expand`, so the result equals it bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kMinPart = 65536;

struct Plane {
  const uint8_t* data;
  int64_t bytes;  // B_p
  int width;      // w_p
  int offset;     // o_p
};

// Weights [begin, end) of the output, for `kPlanes` planes, 32 table entries where `kWide` (5 bits,
// vpermi2ps) or 16 (vpermps), and one scale per last-axis channel where `kPerChannel`.
//
// The range is walked in stretches in which every plane's digits sit at one shift of consecutive
// bytes and the scales are consecutive: a stretch ends where a plane's row or a channel row ends,
// tracked by cursors (no divisions in the loop). In a stretch the 16 indices of a step are
// assembled as bytes (16-bit shifts, so a digit never leaves its byte; mask; or), widened once to
// 32-bit lanes, looked up by one permute and scaled.
template <int kPlanes, bool kWide, bool kPerChannel>
void ExpandRangeOf(const Plane* planes, const float* table, const float* scale, int64_t channels, float* out,
                   int64_t begin, int64_t end) {
  const int entries = 1 << planes[kPlanes - 1].offset << planes[kPlanes - 1].width;
  const __m512 low = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << std::min(entries, 16)) - 1), table);
  const __m512 high = kWide ? _mm512_loadu_ps(table + 16) : low;
  const __m512 one_scale = _mm512_set1_ps(scale[0]);
  __m128i left[kPlanes], mask[kPlanes];
  int64_t row[kPlanes], col[kPlanes];
  for (int k = 0; k < kPlanes; ++k) {
    left[k] = _mm_cvtsi32_si128(planes[k].offset);
    mask[k] = _mm_set1_epi8(static_cast<char>((1 << planes[k].width) - 1));
    row[k] = begin / planes[k].bytes;
    col[k] = begin % planes[k].bytes;
  }
  int64_t channel = kPerChannel ? begin % channels : 0;
  for (int64_t j = begin; j < end;) {
    int64_t len = end - j;
    if (kPerChannel) len = std::min(len, channels - channel);
    const uint8_t* data[kPlanes];
    int shift[kPlanes];
    __m128i right[kPlanes];
    for (int k = 0; k < kPlanes; ++k) {
      len = std::min(len, planes[k].bytes - col[k]);
      data[k] = planes[k].data + col[k];
      shift[k] = static_cast<int>(row[k]) * planes[k].width;
      right[k] = _mm_cvtsi32_si128(shift[k]);
    }
    const float* scale_at = scale + channel;
    float* out_at = out + j;
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
      __m128i index = _mm_setzero_si128();
      for (int k = 0; k < kPlanes; ++k) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data[k] + i));
        index = _mm_or_si128(index, _mm_sll_epi16(_mm_and_si128(_mm_srl_epi16(bytes, right[k]), mask[k]), left[k]));
      }
      const __m512i lanes = _mm512_cvtepu8_epi32(index);
      const __m512 value = kWide ? _mm512_permutex2var_ps(low, lanes, high) : _mm512_permutexvar_ps(lanes, low);
      _mm512_storeu_ps(out_at + i, _mm512_mul_ps(value, kPerChannel ? _mm512_loadu_ps(scale_at + i) : one_scale));
    }
    for (; i < len; ++i) {
      uint32_t index = 0;
      for (int k = 0; k < kPlanes; ++k)
        index |= ((data[k][i] >> shift[k]) & ((1u << planes[k].width) - 1)) << planes[k].offset;
      out_at[i] = table[index] * (kPerChannel ? scale_at[i] : scale[0]);
    }
    j += len;
    if (kPerChannel && (channel += len) == channels) channel = 0;
    for (int k = 0; k < kPlanes; ++k)
      if ((col[k] += len) == planes[k].bytes) col[k] = 0, ++row[k];
  }
}

template <int kPlanes, bool kWide>
void ExpandRangeScaled(const Plane* planes, const float* table, const float* scale, int64_t channels, float* out,
                       int64_t begin, int64_t end) {
  if (channels == 1) return ExpandRangeOf<kPlanes, kWide, false>(planes, table, scale, channels, out, begin, end);
  ExpandRangeOf<kPlanes, kWide, true>(planes, table, scale, channels, out, begin, end);
}

// Weights [begin, end) of the output (1..5 bits: one plane, or two for 3 and 5 bits).
void ExpandRange(const std::vector<Plane>& planes, const float* table, int bits, const float* scale,
                 int64_t channels, float* out, int64_t begin, int64_t end) {
  const Plane* p = planes.data();
  if (bits == 5) return ExpandRangeScaled<2, true>(p, table, scale, channels, out, begin, end);
  if (bits == 3) return ExpandRangeScaled<2, false>(p, table, scale, channels, out, begin, end);
  ExpandRangeScaled<1, false>(p, table, scale, channels, out, begin, end);
}

// The work of one call, shared with the pool's tasks: parts are claimed from `next`, so the calling
// thread never waits on a task that has not started (it takes the unclaimed parts itself), and a
// task that starts after the call has returned finds nothing left and touches only this state.
struct Work {
  std::vector<Plane> planes;
  const float* table;
  const float* scale;
  float* out;
  int bits;
  int64_t channels, n, parts, step;
  std::atomic<int64_t> next{0}, done{0};

  void Drain() {
    for (int64_t part; (part = next.fetch_add(1)) < parts;) {
      ExpandRange(planes, table, bits, scale, channels, out, std::min(n, part * step),
                  std::min(n, (part + 1) * step));
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error Lookup(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> table, ffi::Buffer<ffi::F32> scale,
                  ffi::RemainingArgs planes_in, ffi::ResultBuffer<ffi::F32> out, int32_t bits) {
  if (bits < 1 || bits > 5 || table.element_count() != (int64_t{1} << bits))
    return ffi::Error::InvalidArgument("gq_lookup: bits must be 1..5 and the table have 2^bits entries");
  auto work = std::make_shared<Work>();
  work->n = out->element_count();
  work->channels = scale.element_count();
  int offset = 0;
  for (int w : {1, 2, 4}) {
    if (!(bits & w)) continue;
    if (work->planes.size() >= planes_in.size())
      return ffi::Error::InvalidArgument("gq_lookup: fewer planes than bits needs");
    auto plane = planes_in.get<ffi::AnyBuffer>(work->planes.size());
    if (plane.has_error()) return plane.error();
    const int64_t bytes = static_cast<int64_t>(plane->element_count());
    if (bytes * (8 / w) < work->n) return ffi::Error::InvalidArgument("gq_lookup: a plane is too short");
    work->planes.push_back({static_cast<const uint8_t*>(plane->untyped_data()), bytes, w, offset});
    offset += w;
  }
  if (work->planes.size() != planes_in.size())
    return ffi::Error::InvalidArgument("gq_lookup: more planes than bits needs");
  if (work->channels != 1 && work->n % work->channels != 0)
    return ffi::Error::InvalidArgument("gq_lookup: scale must have 1 entry or one per last-axis channel");
  work->table = table.typed_data();
  work->scale = scale.typed_data();
  work->out = out->typed_data();
  work->bits = bits;
  // One part per thread of the pool (this thread is one of them, or waits on one), each a multiple
  // of 16 weights and none under kMinPart weights, below which waking a thread costs more than it saves.
  work->parts = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), work->n / kMinPart));
  work->step = ((work->n + work->parts - 1) / work->parts + 15) / 16 * 16;
  for (int64_t part = 1; part < work->parts; ++part) pool.Schedule([work] { work->Drain(); });
  work->Drain();
  while (work->done.load(std::memory_order_acquire) < work->parts) _mm_pause();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GqLookup, Lookup,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("bits"));
