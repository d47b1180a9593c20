// The codebook lookup of a resident GQ weight on an x86 CPU with AVX-512: an XLA FFI handler.
//
// out[j] = table[index(j)] * scale[j mod C]   for j = 0 .. N - 1,
//
// with index(j) = sum over planes p of ((plane_p[j mod B_p] >> (w_p * (j div B_p))) & (2^w_p - 1)) << o_p:
// the strided bit planes of `gq_jax.runtime.pack_planes` (width w_p, B_p bytes, digit offset o_p),
// table [2^bits] float32, scale [C] float32 (C = 1 for one scale per tensor, else the last axis).
// The output is cut into stretches in which every plane's digits come from consecutive bytes at one
// shift and the scales are consecutive; in a stretch, 16 weights at a time: each plane's 16 bytes
// widened to 32-bit lanes, shifted and masked (a 1-bit plane's tested into a lane mask instead), then
// one register permute looks the 16 indices up (vpermps for <= 4 bits, vpermi2ps for 5, a gather
// above), so a weight costs about what the int8 -> float32 convert of an 8-bit weight costs, and
// reads 5/8 of its bytes at 5 bits. The work is split over XLA's intra-op thread pool. The products
// are the float32 ones of `PackedArray.expand`, so the result equals it bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Plane {
  const uint8_t* data;
  int64_t bytes;  // B_p
  int width;      // w_p
  int offset;     // o_p
};

// The lookup of 16 indices: vpermps into 16 entries (<= 4 bits), vpermi2ps into 32 (5 bits), else
// a gather.
enum class Kind { kPermute16, kPermute32, kGather };

template <Kind kind>
inline __m512 Look(__m512i index, __m512 low, __m512 high, const float* table) {
  if constexpr (kind == Kind::kPermute16) return _mm512_permutexvar_ps(index, low);
  if constexpr (kind == Kind::kPermute32) return _mm512_permutex2var_ps(low, index, high);
  return _mm512_i32gather_ps(index, table, 4);
}

// One stretch of `len` weights in which every plane's digits sit at one shift of consecutive bytes
// (`data[k]`, shifted right by `shift[k]`) and, if `scale` is not null, the scales are consecutive
// too (else every weight takes `one_scale`).
template <int kPlanes, Kind kind>
void Stretch(const uint8_t* const* data, const int* shift, const Plane* planes, const float* table,
             const float* scale, float one_scale, float* out, int64_t len) {
  const int entries = 1 << planes[kPlanes - 1].offset << planes[kPlanes - 1].width;
  const __m512 low = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << std::min(entries, 16)) - 1), table);
  const __m512 high = entries >= 32 ? _mm512_loadu_ps(table + 16) : low;
  __m128i right[kPlanes], left[kPlanes];
  __m512i mask[kPlanes], place[kPlanes];
  __m128i bit[kPlanes];
  for (int k = 0; k < kPlanes; ++k) {
    bit[k] = _mm_set1_epi8(static_cast<char>(1 << shift[k]));
    place[k] = _mm512_set1_epi32(1 << planes[k].offset);
    right[k] = _mm_cvtsi32_si128(shift[k]);
    left[k] = _mm_cvtsi32_si128(planes[k].offset);
    mask[k] = _mm512_set1_epi32((1 << planes[k].width) - 1);
  }
  const __m512 scale_all = _mm512_set1_ps(one_scale);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    __m512i index = _mm512_setzero_si512();
    for (int k = 0; k < kPlanes; ++k) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data[k] + i));
      if (planes[k].width == 1) {  // the lanes whose bit is set, as a mask: no widening needed
        index = _mm512_mask_or_epi32(index, _mm_test_epi8_mask(bytes, bit[k]), index, place[k]);
      } else {
        const __m512i digit = _mm512_and_si512(_mm512_srl_epi32(_mm512_cvtepu8_epi32(bytes), right[k]), mask[k]);
        index = _mm512_or_si512(index, _mm512_sll_epi32(digit, left[k]));
      }
    }
    const __m512 s = scale == nullptr ? scale_all : _mm512_loadu_ps(scale + i);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(Look<kind>(index, low, high, table), s));
  }
  for (; i < len; ++i) {
    uint32_t index = 0;
    for (int k = 0; k < kPlanes; ++k)
      index |= ((data[k][i] >> shift[k]) & ((1u << planes[k].width) - 1)) << planes[k].offset;
    out[i] = table[index] * (scale == nullptr ? one_scale : scale[i]);
  }
}

template <int kPlanes, Kind kind>
void ExpandRangeOf(const std::vector<Plane>& planes, const float* table, const float* scale,
                   int64_t channels, float* out, int64_t begin, int64_t end) {
  const uint8_t* data[kPlanes];
  int shift[kPlanes];
  for (int64_t j = begin, stop; j < end; j = stop) {
    stop = channels == 1 ? end : std::min(end, (j / channels + 1) * channels);
    for (int k = 0; k < kPlanes; ++k) {
      const int64_t row = j / planes[k].bytes;
      stop = std::min(stop, (row + 1) * planes[k].bytes);
      data[k] = planes[k].data + (j - row * planes[k].bytes);
      shift[k] = static_cast<int>(row) * planes[k].width;
    }
    Stretch<kPlanes, kind>(data, shift, planes.data(), table, channels == 1 ? nullptr : scale + j % channels,
                           scale[0], out + j, stop - j);
  }
}

template <Kind kind>
void ExpandRangeKind(const std::vector<Plane>& planes, const float* table, const float* scale,
                     int64_t channels, float* out, int64_t begin, int64_t end) {
  switch (planes.size()) {
    case 1: return ExpandRangeOf<1, kind>(planes, table, scale, channels, out, begin, end);
    case 2: return ExpandRangeOf<2, kind>(planes, table, scale, channels, out, begin, end);
    default: return ExpandRangeOf<3, kind>(planes, table, scale, channels, out, begin, end);
  }
}

// Weights [begin, end) of the output.
void ExpandRange(const std::vector<Plane>& planes, const float* table, int bits, const float* scale,
                 int64_t channels, float* out, int64_t begin, int64_t end) {
  if (bits <= 4) return ExpandRangeKind<Kind::kPermute16>(planes, table, scale, channels, out, begin, end);
  if (bits == 5) return ExpandRangeKind<Kind::kPermute32>(planes, table, scale, channels, out, begin, end);
  ExpandRangeKind<Kind::kGather>(planes, table, scale, channels, out, begin, end);
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
  if (bits < 1 || bits > 8 || table.element_count() != (int64_t{1} << bits))
    return ffi::Error::InvalidArgument("gq_lookup: the table must have 2^bits entries, bits 1..8");
  auto work = std::make_shared<Work>();
  work->n = out->element_count();
  work->channels = scale.element_count();
  int offset = 0;
  for (int w : {1, 2, 4, 8}) {
    if (bits == 8 ? w != 8 : !(bits & w)) continue;
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
  // One part per thread of the pool and one for this thread, each a multiple of 16 weights.
  work->parts = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads() + 1, work->n / 65536));
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
