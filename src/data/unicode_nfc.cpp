// NFC: decompose (the generated canonical decompositions, recursively, plus the Hangul
// arithmetic), order marks by combining class, then compose primary composites.
#include "data/unicode_nfc.hpp"

#include <algorithm>
#include <vector>

#include "data/unicode_props.hpp"
#include "data/unicode_tables.hpp"

namespace opd::data::unicode {
namespace {

namespace t = unicode_tables;

// Hangul syllables decompose and compose by arithmetic (Unicode 15.0, section 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t combining_class(uint32_t cp) {
  const uint32_t* end = t::kCccStart + t::kCccStart_size;
  const uint32_t* it = std::upper_bound(t::kCccStart, end, cp);
  return t::kCccValue[(it - t::kCccStart) - 1];
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const t::Decomposition* end = t::kDecomp + t::kDecomp_size;
  const t::Decomposition* it = std::lower_bound(
      t::kDecomp, end, cp, [](const t::Decomposition& d, uint32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second != 0) decompose(it->second, out);
}

// The primary composite of (a, b), or 0 when there is none.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const t::Composition* end = t::kCompose + t::kCompose_size;
  const t::Composition* it =
      std::lower_bound(t::kCompose, end, std::pair{a, b}, [](const t::Composition& c, auto key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

void normalize_run(const std::vector<uint32_t>& cps, std::string& out) {
  std::vector<uint32_t> d;
  for (uint32_t cp : cps) decompose(cp, d);
  std::vector<uint8_t> cc(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) cc[i] = combining_class(d[i]);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (std::size_t i = 1; i < d.size(); ++i)
    for (std::size_t j = i; j > 0 && cc[j] != 0 && cc[j - 1] > cc[j]; --j) {
      std::swap(d[j], d[j - 1]);
      std::swap(cc[j], cc[j - 1]);
    }
  // Canonical composition: a character joins the last starter unless something between them
  // blocks it (a starter, or a mark of the same or a higher class).
  std::vector<uint32_t> r;
  r.reserve(d.size());
  std::ptrdiff_t starter = -1;
  uint8_t last_cc = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const bool adjacent = starter >= 0 && static_cast<std::size_t>(starter) + 1 == r.size();
    if (starter >= 0 && (adjacent || last_cc < cc[i])) {
      if (const uint32_t p = compose(r[starter], d[i])) {
        r[starter] = p;
        continue;
      }
    }
    if (cc[i] == 0) starter = static_cast<std::ptrdiff_t>(r.size());
    r.push_back(d[i]);
    last_cc = cc[i];
  }
  for (uint32_t cp : r) append_utf8(out, cp);
}

}  // namespace

bool nfc_quick_check(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    uint32_t cp;
    i += decode_utf8(text, i, cp);
    if (cp != kInvalid && (props(cp) & kNfcUnstableBit)) return false;
  }
  return true;
}

std::string nfc(std::string_view text) {
  if (nfc_quick_check(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  std::vector<uint32_t> run;
  for (std::size_t i = 0; i < text.size();) {
    uint32_t cp;
    const std::size_t n = decode_utf8(text, i, cp);
    if (cp == kInvalid) {
      normalize_run(run, out);
      run.clear();
      out += text[i];
    } else {
      run.push_back(cp);
    }
    i += n;
  }
  normalize_run(run, out);
  return out;
}

}  // namespace opd::data::unicode
