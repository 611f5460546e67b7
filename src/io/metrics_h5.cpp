// io/metrics_h5.cpp: the per-step metrics file (see metrics_h5.hpp).
#include "io/metrics_h5.hpp"

#include <filesystem>
#include <limits>

#include "core/error.hpp"

namespace opd::io {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Rows per chunk: 8 KiB of float64, a few hundred KiB for a typical set of metrics, and a
// one-step append touches one chunk per dataset.
constexpr int64_t kChunkRows = 1024;
constexpr const char* kStep = "step";
// On each metric column: the step of the row at which it first appeared. Reopening removes the
// columns that first appeared after keep_through, which the uninterrupted run may never create.
constexpr const char* kFirstStep = "first_step";

// A metric name is a relative slash path with non-empty components, other than "step".
void check_name(const std::string& name) {
  bool ok = !name.empty() && name.front() != '/' && name.back() != '/' &&
            name.find("//") == std::string::npos;
  OPD_CHECK(ok, "metrics: bad metric name '", name, "'");
  OPD_CHECK(name != kStep && name.rfind(std::string(kStep) + "/", 0) != 0, "metrics: the name '",
            name, "' is reserved for the step column");
}

// Rank-1 dataset of the given type class, or an Input error naming the file.
h5::Dataset open_column(const h5::File& f, const std::string& name, H5T_class_t cls) {
  h5::Dataset d = f.open_dataset(name);
  if (d.shape().size() != 1) d.fail("is not a 1-D column: not a metrics file");
  if (H5Tget_class(d.type().id()) != cls)
    d.fail(cls == H5T_INTEGER ? "is not an integer column: not a metrics file"
                              : "is not a floating-point column: not a metrics file");
  return d;
}

std::vector<int64_t> read_steps(const h5::Dataset& d) {
  std::vector<int64_t> steps(static_cast<std::size_t>(d.shape()[0]));
  d.read(H5T_NATIVE_INT64, steps.data(), {0}, {static_cast<int64_t>(steps.size())});
  return steps;
}

}  // namespace

MetricsH5::MetricsH5(const std::string& path, int64_t keep_through) {
  std::error_code ec;
  if (keep_through < 0 || !std::filesystem::exists(path, ec)) {
    file_.emplace(h5::File::create(path));
    step_.emplace(file_->create_extendible_dataset(kStep, H5T_STD_I64LE, {0}, {kChunkRows}));
    file_->flush();
    return;
  }
  file_.emplace(h5::File::open_read_write(path));
  if (file_->object_type(kStep) != H5I_DATASET)
    h5::fail(path, kStep, "no such dataset: not a metrics file");
  step_.emplace(open_column(*file_, kStep, H5T_INTEGER));
  // Steps increase down the file: keep the prefix through keep_through.
  const std::vector<int64_t> steps = read_steps(*step_);
  std::size_t keep = 0;
  while (keep < steps.size() && steps[keep] <= keep_through) ++keep;
  rows_ = static_cast<int64_t>(keep);
  last_step_ = keep > 0 ? steps[keep - 1] : 0;
  step_->set_extent({rows_});
  std::vector<std::string> appeared_later;
  for (const std::string& name : file_->dataset_names()) {
    if (name == kStep) continue;
    h5::Dataset d = open_column(*file_, name, H5T_FLOAT);
    if (d.has_attribute(kFirstStep) && d.read_attribute_int(kFirstStep) > keep_through) {
      appeared_later.push_back(name);  // removed below, once closed
      continue;
    }
    const int64_t have = d.shape()[0];
    d.set_extent({rows_});
    // A run killed inside an append can leave a column shorter than `step` (append extends the
    // step column last, so normally only longer ones): those rows were never written.
    if (have < rows_) {
      std::vector<double> nan(static_cast<std::size_t>(rows_ - have), kNaN);
      d.write(H5T_NATIVE_DOUBLE, nan.data(), {have}, {rows_ - have});
    }
    metrics_.emplace(name, std::move(d));
  }
  for (const std::string& name : appeared_later) file_->remove(name);
  file_->flush();
}

MetricsH5::~MetricsH5() {
  try {
    close();
  } catch (...) {
    // A destructor must not throw; close() explicitly to see the error.
  }
}

void MetricsH5::close() {
  metrics_.clear();
  step_.reset();
  if (file_) file_->close();
  file_.reset();
}

void MetricsH5::append(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  OPD_CHECK(file_, "metrics: append after close");
  OPD_CHECK(rows_ == 0 || step > last_step_, file_->path(), ": step ", step,
            " does not follow the last step ", last_step_);
  std::map<std::string, double> row;
  for (const auto& [name, v] : values) {
    check_name(name);
    OPD_CHECK(row.emplace(name, v).second, "metrics: '", name, "' given twice at step ", step);
  }
  // New metrics: a column holding NaN for every earlier row.
  for (const auto& [name, v] : row) {
    if (metrics_.count(name)) continue;
    h5::Dataset d = file_->create_extendible_dataset(name, H5T_IEEE_F64LE, {rows_}, {kChunkRows});
    d.write_attribute(kFirstStep, step);
    if (rows_ > 0) {
      std::vector<double> nan(static_cast<std::size_t>(rows_), kNaN);
      d.write(H5T_NATIVE_DOUBLE, nan.data(), {0}, {rows_});
    }
    metrics_.emplace(name, std::move(d));
  }
  const int64_t r = rows_;
  for (auto& [name, d] : metrics_) {
    auto it = row.find(name);
    const double v = it == row.end() ? kNaN : it->second;
    d.set_extent({r + 1});
    d.write(H5T_NATIVE_DOUBLE, &v, {r}, {1});
  }
  // The step column last: a row exists once its step is written (see the constructor).
  step_->set_extent({r + 1});
  step_->write(H5T_NATIVE_INT64, &step, {r}, {1});
  rows_ = r + 1;
  last_step_ = step;
  file_->flush();
}

std::map<std::string, std::vector<double>> read_metrics_h5(const std::string& path,
                                                           std::vector<int64_t>* steps) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) input_error(path, "no such metrics file");
  h5::File f = h5::File::open_read_only(path);
  if (f.object_type(kStep) != H5I_DATASET)
    h5::fail(path, kStep, "no such dataset: not a metrics file");
  std::map<std::string, std::vector<double>> out;
  {
    h5::Dataset sd = open_column(f, kStep, H5T_INTEGER);
    if (steps) *steps = read_steps(sd);
  }
  for (const std::string& name : f.dataset_names()) {
    if (name == kStep) continue;
    h5::Dataset d = open_column(f, name, H5T_FLOAT);
    std::vector<double> col(static_cast<std::size_t>(d.shape()[0]));
    d.read(H5T_NATIVE_DOUBLE, col.data(), {0}, {static_cast<int64_t>(col.size())});
    out.emplace(name, std::move(col));
  }
  f.close();
  return out;
}

}  // namespace opd::io
