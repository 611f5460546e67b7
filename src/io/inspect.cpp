// io/inspect.cpp: inspect_checkpoint (see inspect.hpp).
#include "io/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <vector>

#include "core/bf16.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"

namespace opd::io {

namespace {

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// 1234567 -> "1,234,567": parameter counts are read by people.
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

template <class T>
std::string list_values(const std::vector<T>& v) {
  constexpr std::size_t kShown = 8;
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < v.size() && i < kShown; ++i) os << (i ? ", " : "") << v[i];
  if (v.size() > kShown) os << ", ...";
  os << "]";
  return os.str();
}

struct Row {
  std::string name, dtype, shape, elements, mean = "-", rms = "-", min = "-", max = "-", note;
};

// Statistics over the finite elements; non-finite ones are counted in the note.
void fill_stats(const core::Tensor& t, Row& row) {
  int64_t n = t.numel();
  if (n == 0) return;
  double sum = 0, sumsq = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
  int64_t finite = 0;
  auto add = [&](double x) {
    if (!std::isfinite(x)) return;
    ++finite;
    sum += x;
    sumsq += x * x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  };
  bool is_float = true;
  switch (t.dtype()) {
    case core::DType::F32: {
      const float* p = t.data<float>();
      for (int64_t i = 0; i < n; ++i) add(p[i]);
      break;
    }
    case core::DType::BF16: {
      const uint16_t* p = t.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) add(core::bf16_to_float(p[i]));
      break;
    }
    case core::DType::I32: {
      is_float = false;
      const int32_t* p = t.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) add(static_cast<double>(p[i]));
      break;
    }
    case core::DType::I64: {
      is_float = false;
      const int64_t* p = t.data<int64_t>();
      for (int64_t i = 0; i < n; ++i) add(static_cast<double>(p[i]));
      break;
    }
  }
  if (finite < n) row.note = grouped(n - finite) + " non-finite";
  if (finite == 0) return;
  // Integer tensors (token ids, counters): only the range means something.
  row.min = fmt_num(lo);
  row.max = fmt_num(hi);
  if (is_float) {
    row.mean = fmt_num(sum / static_cast<double>(finite));
    row.rms = fmt_num(std::sqrt(sumsq / static_cast<double>(finite)));
  }
}

std::string pad(const std::string& s, std::size_t w, bool right) {
  if (s.size() >= w) return s;
  return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

}  // namespace

std::string inspect_checkpoint(const std::string& path) {
  CheckpointReader r(path);
  std::ostringstream out;
  out << "checkpoint " << path << "\n";
  out << "format     " << r.attribute_string("format") << ", version " << r.format_version()
      << "\n";

  auto attrs = r.attributes();
  bool any_attr = false;
  for (const auto& [k, v] : attrs) {
    if (k == "format" || k == "format_version") continue;
    if (!any_attr) out << "\nattributes\n";
    any_attr = true;
    out << "  " << k << " = " << v << "\n";
  }

  std::vector<DatasetInfo> infos = r.list();
  std::vector<std::string> values, strings;
  std::vector<Row> rows;
  struct Total {
    int64_t tensors = 0, elements = 0, bytes = 0;
  };
  std::map<std::string, Total> totals;

  for (const DatasetInfo& info : infos) {
    try {
      if (info.type == StoredType::String) {
        std::string text = r.read_string(info.name);
        std::size_t nl = text.find('\n');
        int64_t lines = std::count(text.begin(), text.end(), '\n') +
                        (!text.empty() && text.back() != '\n' ? 1 : 0);
        std::string first = text.substr(0, nl);
        if (first.size() > 60) first = first.substr(0, 57) + "...";
        strings.push_back(info.name + ": \"" + first + "\" (" + std::to_string(lines) +
                          " lines, " + std::to_string(text.size()) + " bytes)");
        continue;
      }
      if (!info.is_tensor && info.shape.size() <= 1) {
        std::string v;
        bool scalar = info.shape.empty();
        if (info.type == StoredType::I64 && scalar) v = std::to_string(r.read_int(info.name));
        else if (info.type == StoredType::F64 && scalar) v = fmt_num(r.read_double(info.name));
        else if (info.type == StoredType::I64) v = list_values(r.read_ints(info.name));
        else if (info.type == StoredType::U64) v = list_values(r.read_u64s(info.name));
        else v = "(" + std::string(stored_type_name(info.type)) + core::shape_str(info.shape) + ")";
        if (!scalar)
          v += "  (" + std::string(stored_type_name(info.type)) + " x" +
               std::to_string(info.numel()) + ")";
        values.push_back(info.name + " = " + v);
        continue;
      }
    } catch (const Error& e) {
      values.push_back(info.name + " = <unreadable: " + e.message() + ">");
      continue;
    }

    Row row;
    row.name = info.name;
    row.dtype = stored_type_name(info.type);
    row.shape = core::shape_str(info.shape);
    row.elements = grouped(info.numel());
    try {
      fill_stats(r.read_tensor(info.name), row);
    } catch (const Error& e) {
      row.note = e.message().find("checksum") != std::string::npos ? "CHECKSUM MISMATCH"
                                                                   : "UNREADABLE: " + e.message();
    }
    rows.push_back(row);
    std::size_t slash = info.name.find('/');
    Total& t = totals[slash == std::string::npos ? "(root)" : info.name.substr(0, slash)];
    t.tensors += 1;
    t.elements += info.numel();
    int64_t esize = info.type == StoredType::BF16 ? 2 : (info.type == StoredType::I64 ? 8 : 4);
    t.bytes += info.numel() * esize;
  }

  if (!values.empty()) {
    out << "\nvalues\n";
    for (const auto& v : values) out << "  " << v << "\n";
  }
  if (!strings.empty()) {
    out << "\nstrings\n";
    for (const auto& s : strings) out << "  " << s << "\n";
  }
  if (!rows.empty()) {
    Row head{"name", "dtype", "shape", "elements", "mean", "rms", "min", "max", ""};
    std::vector<std::size_t> w(8, 0);
    auto widen = [&](const Row& x) {
      const std::string* cols[] = {&x.name, &x.dtype, &x.shape, &x.elements,
                                   &x.mean, &x.rms,   &x.min,   &x.max};
      for (std::size_t i = 0; i < 8; ++i) w[i] = std::max(w[i], cols[i]->size());
    };
    widen(head);
    for (const auto& x : rows) widen(x);
    auto line = [&](const Row& x) {
      std::string s = "  " + pad(x.name, w[0], false) + "  " + pad(x.dtype, w[1], false) + "  " +
                      pad(x.shape, w[2], false) + "  " + pad(x.elements, w[3], true) + "  " +
                      pad(x.mean, w[4], true) + "  " + pad(x.rms, w[5], true) + "  " +
                      pad(x.min, w[6], true) + "  " + pad(x.max, w[7], true);
      if (!x.note.empty()) s += "  " + x.note;
      out << s << "\n";
    };
    out << "\ntensors\n";
    line(head);
    for (const auto& x : rows) line(x);

    out << "\ntotals\n";
    std::size_t gw = 0;
    for (const auto& [g, t] : totals) gw = std::max(gw, g.size());
    Total all;
    for (const auto& [g, t] : totals) {
      char mib[32];
      std::snprintf(mib, sizeof mib, "%.2f MiB", static_cast<double>(t.bytes) / (1 << 20));
      out << "  " << pad(g, gw, false) << "  " << t.tensors << " tensors, " << grouped(t.elements)
          << " parameters, " << mib << "\n";
      all.tensors += t.tensors;
      all.elements += t.elements;
    }
    out << "  " << pad("all", gw, false) << "  " << all.tensors << " tensors, "
        << grouped(all.elements) << " parameters\n";
  }
  return out.str();
}

}  // namespace opd::io
