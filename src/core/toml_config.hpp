// Strict TOML job-file reading over toml++: parsing with FILE:LINE:COL errors, command-line
// `--set a.b.c=value` overrides, and ConfigTable, typed getters that record every key they read
// so that finish() can reject unknown (misspelt) keys with their line and a "did you mean".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "core/error.hpp"

namespace opd::core {

// Parse a TOML file / text. A syntax error is an Input error "FILE:LINE:COL: message"; a file
// that cannot be read is an Input error naming the path.
toml::table parse_toml_file(const std::string& path);
toml::table parse_toml_string(const std::string& text, const std::string& source_name);

// Apply one `--set` assignment "a.b.c=value" to `root`.
//  - value: parsed as a TOML value when it parses as one (3e-4, true, [1,2], "s", {x=1}), else
//    taken as a bare string (so `--set run.name=exp1` needs no quotes);
//  - segments address tables; inside an array of tables a segment is an index (stage.0.steps)
//    or the `name` of an element (stage.pretrain.steps);
//  - missing tables and keys are created (a later finish() rejects the key if it is unknown).
// Nodes created here carry no source position; messages about them say "(set on the command
// line)". Bad syntax (no '=', empty key or segment, empty value) is an Input error.
void apply_override(toml::table& root, const std::string& assignment);

// "FILE:LINE:COL" for a node parsed from a file; "(set on the command line)" for one created by
// apply_override (toml++ nodes built in code have no source).
std::string source_location(const toml::source_region& region, const std::string& fallback_file);

// Optimal-string-alignment edit distance (adjacent transpositions count 1), for "did you mean".
std::size_t edit_distance(const std::string& a, const std::string& b);

// A read-only view of one TOML table with its dotted path (e.g. "stage[1].optim") and the name of
// the file it came from. The toml::table must outlive every ConfigTable made from it.
//
// Readers are const: the read/ignored bookkeeping lives in a tracker shared by all the views made
// from one root, so views can be copied and passed by const reference freely.
//
// Every key that is read (present or not) or ignore()d is recorded. finish() then throws for the
// first key (in file order) that nobody read, naming its line and suggesting a read key within
// edit distance 2. finish() also checks every sub-table opened through table()/tables() of this
// table, so calling it on the root after reading everything checks the whole file; calling it on
// a sub-table first is fine too (checks are idempotent).
class ConfigTable {
 public:
  ConfigTable(const toml::table& table, std::string source_name);

  const std::string& path() const { return path_; }
  const std::string& source_name() const { return source_name_; }
  const toml::table& raw() const { return *table_; }
  // "path.key" (or "key" at the root): how messages name a key.
  std::string key_path(const std::string& key) const;
  // Where this table starts, "FILE:LINE:COL"; the file name alone for the root table.
  std::string location() const;

  bool has(const std::string& key) const;  // does not mark the key read
  void ignore(const std::string& key) const;     // accept the key (and anything below it) unread

  // Typed getters. T: bool, any integer type (range-checked against T), float, double (an integer
  // value is accepted), std::string, std::vector<int64_t>, std::vector<double>,
  // std::vector<std::string>. A present key of the wrong type is an Input error naming its line:
  //   "job.toml:7:9: key 'run.seed' must be an integer, got string".
  template <class T>
  T get(const std::string& key, const T& def) const;
  std::string get(const std::string& key, const char* def) const { return get<std::string>(key, def); }
  template <class T>
  T require(const std::string& key) const;  // missing -> "missing required key 'run.seed'"
  template <class T>
  std::optional<T> find(const std::string& key) const;  // nullopt when absent

  // Range-checked (bounds inclusive): "key 'optim.lr' must be in [0, 1], got 3".
  int64_t get_int(const std::string& key, int64_t def, int64_t min, int64_t max) const;
  int64_t require_int(const std::string& key, int64_t min, int64_t max) const;
  double get_double(const std::string& key, double def, double min, double max) const;
  double require_double(const std::string& key, double min, double max) const;
  // One of `allowed`: "key 'x' must be one of "constant", "linear", "cosine"; got "cosin"".
  std::string get_choice(const std::string& key, const std::string& def,
                         std::initializer_list<std::string> allowed) const;
  std::string require_choice(const std::string& key,
                             std::initializer_list<std::string> allowed) const;

  // Sub-tables. table(): required; find_table(): nullopt when absent; table_or_empty(): a view of
  // an empty table when absent (so defaults apply). tables(): the elements of an array of tables,
  // with paths "key[i]"; empty when absent.
  ConfigTable table(const std::string& key) const;
  std::optional<ConfigTable> find_table(const std::string& key) const;
  ConfigTable table_or_empty(const std::string& key) const;
  std::vector<ConfigTable> tables(const std::string& key) const;

  void finish() const;

 private:
  // Read/ignored state shared by a root table and all tables opened from it.
  struct Tracker {
    std::map<const toml::table*, std::set<std::string>> read;     // keys asked for, per table
    std::map<const toml::table*, std::set<std::string>> ignored;  // keys accepted unread
    std::set<const toml::table*> opened;                          // tables opened as ConfigTable
  };

  ConfigTable(const toml::table& table, std::string path, std::string source_name,
              std::shared_ptr<Tracker> tracker);

  // The node for `key` after marking it read; nullptr when absent.
  const toml::node* lookup(const std::string& key) const;
  std::string where(const toml::node& node) const;
  [[noreturn]] void type_error(const std::string& key, const toml::node& node,
                               const char* expected) const;
  [[noreturn]] void missing(const std::string& key) const;
  void finish_table(const toml::table& table, const std::string& path) const;

  bool as_bool(const std::string& key, const toml::node& n) const;
  int64_t as_int(const std::string& key, const toml::node& n) const;
  double as_double(const std::string& key, const toml::node& n) const;
  std::string as_string(const std::string& key, const toml::node& n) const;
  std::vector<int64_t> as_int_vector(const std::string& key, const toml::node& n) const;
  std::vector<double> as_double_vector(const std::string& key, const toml::node& n) const;
  std::vector<std::string> as_string_vector(const std::string& key, const toml::node& n) const;
  [[noreturn]] void int_out_of_type_range(const std::string& key, const toml::node& n,
                                          int64_t value, long double lo, long double hi) const;

  template <class T>
  T convert(const std::string& key, const toml::node& n) const;

  const toml::table* table_;
  std::string path_;
  std::string source_name_;
  std::shared_ptr<Tracker> tracker_;
};

// ---- template definitions ---------------------------------------------------------------------

template <class T>
T ConfigTable::convert(const std::string& key, const toml::node& n) const {
  if constexpr (std::is_same_v<T, bool>) {
    return as_bool(key, n);
  } else if constexpr (std::is_integral_v<T>) {
    const int64_t v = as_int(key, n);
    if (!std::in_range<T>(v))
      int_out_of_type_range(key, n, v, static_cast<long double>(std::numeric_limits<T>::min()),
                            static_cast<long double>(std::numeric_limits<T>::max()));
    return static_cast<T>(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(as_double(key, n));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return as_string(key, n);
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    return as_int_vector(key, n);
  } else if constexpr (std::is_same_v<T, std::vector<double>>) {
    return as_double_vector(key, n);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    return as_string_vector(key, n);
  } else {
    static_assert(sizeof(T) == 0, "ConfigTable: unsupported value type");
  }
}

template <class T>
T ConfigTable::get(const std::string& key, const T& def) const {
  const toml::node* n = lookup(key);
  return n ? convert<T>(key, *n) : def;
}

template <class T>
T ConfigTable::require(const std::string& key) const {
  const toml::node* n = lookup(key);
  if (!n) missing(key);
  return convert<T>(key, *n);
}

template <class T>
std::optional<T> ConfigTable::find(const std::string& key) const {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  return convert<T>(key, *n);
}

}  // namespace opd::core
