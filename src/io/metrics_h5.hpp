// Per-step metrics of a stage as HDF5 (RUN/<stage>/metrics.h5, DESIGN.md §5): one extendible 1-D
// float64 dataset per metric plus an int64 `step` dataset, row i of every dataset belonging to
// step[i]. The file is flushed after every step so that it can be read while the run goes on,
// and on resume it is cut back to the checkpoint's step, so a resumed run's file equals an
// uninterrupted run's.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/hdf5_file.hpp"

namespace opd::io {

class MetricsH5 {
 public:
  // keep_through < 0: a new, empty file (replacing any). Otherwise the existing file (a new one
  // if there is none) with every dataset cut to the rows whose step <= keep_through. Fails with
  // an Input error naming the file when it cannot be created, or exists but is not a metrics
  // file.
  MetricsH5(const std::string& path, int64_t keep_through);
  ~MetricsH5();  // closes, swallowing errors (call close() to see them)
  MetricsH5(MetricsH5&&) = default;
  // No move assignment: it would close the old file before the old datasets.
  MetricsH5& operator=(MetricsH5&&) = delete;
  MetricsH5(const MetricsH5&) = delete;
  MetricsH5& operator=(const MetricsH5&) = delete;

  // Appends one row: `step` (strictly greater than the previous row's) and a value per metric.
  // A metric not seen before gets a new dataset, NaN for the earlier rows; a known metric absent
  // here gets NaN in this row. Names are slash paths ("entropy_p/bucket_3": groups are created);
  // "step" is reserved and a name may not repeat within one call. Flushes the file.
  void append(int64_t step, const std::vector<std::pair<std::string, double>>& values);

  int64_t rows() const { return rows_; }
  // Closes the file now (idempotent), failing if HDF5 cannot.
  void close();

 private:
  // Declared before the datasets, so that they are closed first when destroyed: the file is
  // opened with H5F_CLOSE_SEMI, which refuses to close with objects still open.
  // Optional only because they are opened in the constructor's body (neither has an empty state).
  std::optional<h5::File> file_;
  std::optional<h5::Dataset> step_;
  std::map<std::string, h5::Dataset> metrics_;
  int64_t rows_ = 0;
  int64_t last_step_ = 0;
};

// Reads a metrics file back: every metric's column (the `step` dataset excluded) by name, and,
// if `steps` is given, the step column into it. Input error naming the file when it is missing
// or not a metrics file.
std::map<std::string, std::vector<double>> read_metrics_h5(const std::string& path,
                                                           std::vector<int64_t>* steps = nullptr);

}  // namespace opd::io
