// Strict TOML reading: parse errors with positions, --set overrides, ConfigTable. See
// toml_config.hpp.
#include "core/toml_config.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace opd::core {

namespace {

constexpr const char* kCommandLine = "(set on the command line)";
// Source name given to --set values while parsing them; keys inside an inline-table value keep
// it (toml++ copies keys with their position), so it too means "the command line".
constexpr const char* kOverrideSource = "<--set>";

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

template <class V>
std::string fmt(const V& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string quoted_list(std::initializer_list<std::string> items) {
  std::string s;
  for (const auto& it : items) {
    if (!s.empty()) s += ", ";
    s += "\"" + it + "\"";
  }
  return s;
}

// The closest candidate within edit distance 2 (and closer than a full rewrite), or "".
std::string closest(const std::string& word, const std::set<std::string>& candidates) {
  std::string best;
  std::size_t best_d = 3;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d && d < std::max(word.size(), c.size())) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](unsigned char c) { return std::isdigit(c) != 0; });
}

}  // namespace

// ---- parsing ----------------------------------------------------------------------------------

std::string source_location(const toml::source_region& region, const std::string& fallback_file) {
  if (region.begin.line == 0 || (region.path && *region.path == kOverrideSource))
    return kCommandLine;
  const std::string file = region.path && !region.path->empty() ? *region.path : fallback_file;
  return file + ":" + std::to_string(region.begin.line) + ":" +
         std::to_string(region.begin.column);
}

toml::table parse_toml_string(const std::string& text, const std::string& source_name) {
  try {
    return toml::parse(std::string_view(text), std::string_view(source_name));
  } catch (const toml::parse_error& e) {
    toml::source_region region = e.source();
    if (region.begin.line == 0) region.begin = {1, 1};  // never blame the command line here
    input_error(source_location(region, source_name), std::string(e.description()));
  }
}

toml::table parse_toml_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    input_error(path, "file not found", "check the path of the job file");
  if (std::filesystem::is_directory(path, ec))
    input_error(path, "is a directory, not a TOML file");
  std::ifstream in(path, std::ios::binary);
  if (!in) input_error(path, "cannot open the file for reading", "check its permissions");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) input_error(path, "read error");
  return parse_toml_string(text.str(), path);
}

// ---- --set overrides --------------------------------------------------------------------------

void apply_override(toml::table& root, const std::string& assignment) {
  const std::string where = "--set " + assignment;
  const std::size_t eq = assignment.find('=');
  if (eq == std::string::npos)
    input_error(where, "expected KEY=VALUE", "e.g. --set stage.0.optim.lr=3e-4");
  const std::string key = trim(assignment.substr(0, eq));
  const std::string value_text = trim(assignment.substr(eq + 1));
  if (key.empty()) input_error(where, "empty key before '='", "e.g. --set run.seed=1");
  if (value_text.empty())
    input_error(where, "empty value after '='", "for an empty string write KEY='\"\"'");

  std::vector<std::string> segs;
  for (std::size_t b = 0;;) {
    const std::size_t dot = key.find('.', b);
    segs.push_back(trim(key.substr(b, dot == std::string::npos ? std::string::npos : dot - b)));
    if (segs.back().empty())
      input_error(where, "empty segment in key '" + key + "'", "segments are separated by one '.'");
    if (dot == std::string::npos) break;
    b = dot + 1;
  }

  // The value: a TOML value if the text is one, else the text as a string. Parsing "v = TEXT"
  // and requiring exactly one key rejects texts such as "1\nx=2".
  toml::table parsed;
  bool is_toml = false;
  try {
    parsed = toml::parse("v = " + value_text, std::string_view(kOverrideSource));
    is_toml = parsed.size() == 1 && parsed.contains("v");
  } catch (const toml::parse_error&) {
  }

  toml::table* cur = &root;
  std::string walked;  // the path so far, for messages
  for (std::size_t i = 0; i + 1 < segs.size(); ++i) {
    const std::string& seg = segs[i];
    walked += (walked.empty() ? "" : ".") + seg;
    toml::node* n = cur->get(seg);
    if (!n) {
      cur = cur->insert(seg, toml::table{}).first->second.as_table();
    } else if (n->is_table()) {
      cur = n->as_table();
    } else if (n->is_array()) {
      toml::array& arr = *n->as_array();
      if (!arr.is_array_of_tables())
        input_error(where, "'" + walked + "' is an array of values, not of tables",
                    "set the whole array instead: --set " + walked + "=[...]");
      if (i + 2 >= segs.size())
        input_error(where, "'" + walked + "' is an array of tables; name an element and a key",
                    "e.g. --set " + walked + ".0.KEY=VALUE or " + walked + ".NAME.KEY=VALUE");
      const std::string& sel = segs[++i];
      toml::table* elem = nullptr;
      if (all_digits(sel)) {
        const std::size_t idx = std::stoull(sel);
        if (idx >= arr.size())
          input_error(where, "index " + sel + " is out of range: '" + walked + "' has " +
                                 std::to_string(arr.size()) + " element(s)");
        elem = arr.get(idx)->as_table();
      } else {
        std::string names;
        for (auto& e : arr) {
          const auto name = e.as_table()->get_as<std::string>("name");
          if (name && name->get() == sel) {
            elem = e.as_table();
            break;
          }
          if (name) names += (names.empty() ? "'" : ", '") + name->get() + "'";
        }
        if (!elem)
          input_error(where, "no element of '" + walked + "' has name '" + sel + "'",
                      names.empty() ? "address elements by index: " + walked + ".0"
                                    : "names: " + names + "; or an index: " + walked + ".0");
      }
      walked += "." + sel;
      cur = elem;
    } else {
      const std::string tn = type_name(n->type());
      input_error(where, "'" + walked + "' is " + (tn[0] == 'a' || tn[0] == 'i' ? "an " : "a ") +
                             tn + ", not a table");
    }
  }

  const std::string& last = segs.back();
  if (is_toml) {
    // Copying drops toml++'s source position, which is what marks the node as set here.
    parsed.get("v")->visit([&](const auto& v) { cur->insert_or_assign(last, v); });
  } else {
    cur->insert_or_assign(last, value_text);
  }
}

// ---- edit distance ----------------------------------------------------------------------------

std::size_t edit_distance(const std::string& a, const std::string& b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i)
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

// ---- ConfigTable ------------------------------------------------------------------------------

ConfigTable::ConfigTable(const toml::table& table, std::string source_name)
    : ConfigTable(table, "", std::move(source_name), std::make_shared<Tracker>()) {}

ConfigTable::ConfigTable(const toml::table& table, std::string path, std::string source_name,
                         std::shared_ptr<Tracker> tracker)
    : table_(&table),
      path_(std::move(path)),
      source_name_(std::move(source_name)),
      tracker_(std::move(tracker)) {
  tracker_->opened.insert(table_);
}

std::string ConfigTable::key_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

std::string ConfigTable::location() const {
  // The root's position (1:1) says nothing: name the file alone.
  if (path_.empty()) return source_name_;
  return source_location(table_->source(), source_name_);
}

std::string ConfigTable::where(const toml::node& node) const {
  return source_location(node.source(), source_name_);
}

bool ConfigTable::has(const std::string& key) const { return table_->contains(key); }

void ConfigTable::ignore(const std::string& key) const { tracker_->ignored[table_].insert(key); }

const toml::node* ConfigTable::lookup(const std::string& key) const {
  tracker_->read[table_].insert(key);
  return table_->get(key);
}

void ConfigTable::type_error(const std::string& key, const toml::node& node,
                             const char* expected) const {
  std::string hint;
  if (node.source().begin.line == 0 && std::string(expected) == "a string")
    hint = "on the command line, quote it: --set " + key_path(key) + "='\"...\"'";
  else if (node.is_floating_point() && std::string(expected) == "an integer")
    hint = "write it without a decimal point or exponent";
  input_error(where(node),
              "key '" + key_path(key) + "' must be " + expected + ", got " + type_name(node.type()),
              hint);
}

void ConfigTable::missing(const std::string& key) const {
  input_error(location(), "missing required key '" + key_path(key) + "'",
              path_.empty() ? "add it at the top level" : "add it to [" + path_ + "]");
}

void ConfigTable::int_out_of_type_range(const std::string& key, const toml::node& n, int64_t value,
                                        long double lo, long double hi) const {
  input_error(where(n), "key '" + key_path(key) + "' must be in [" + fmt(lo) + ", " + fmt(hi) +
                            "], got " + std::to_string(value));
}

bool ConfigTable::as_bool(const std::string& key, const toml::node& n) const {
  if (!n.is_boolean()) type_error(key, n, "a boolean (true or false)");
  return n.as_boolean()->get();
}

int64_t ConfigTable::as_int(const std::string& key, const toml::node& n) const {
  if (!n.is_integer()) type_error(key, n, "an integer");
  return n.as_integer()->get();
}

double ConfigTable::as_double(const std::string& key, const toml::node& n) const {
  if (n.is_integer()) return static_cast<double>(n.as_integer()->get());
  if (!n.is_floating_point()) type_error(key, n, "a number");
  return n.as_floating_point()->get();
}

std::string ConfigTable::as_string(const std::string& key, const toml::node& n) const {
  if (!n.is_string()) type_error(key, n, "a string");
  return n.as_string()->get();
}

std::vector<int64_t> ConfigTable::as_int_vector(const std::string& key,
                                                const toml::node& n) const {
  if (!n.is_array()) type_error(key, n, "an array of integers");
  std::vector<int64_t> out;
  const toml::array& arr = *n.as_array();
  for (std::size_t i = 0; i < arr.size(); ++i)
    out.push_back(as_int(key + "[" + std::to_string(i) + "]", arr[i]));
  return out;
}

std::vector<double> ConfigTable::as_double_vector(const std::string& key,
                                                  const toml::node& n) const {
  if (!n.is_array()) type_error(key, n, "an array of numbers");
  std::vector<double> out;
  const toml::array& arr = *n.as_array();
  for (std::size_t i = 0; i < arr.size(); ++i)
    out.push_back(as_double(key + "[" + std::to_string(i) + "]", arr[i]));
  return out;
}

std::vector<std::string> ConfigTable::as_string_vector(const std::string& key,
                                                       const toml::node& n) const {
  if (!n.is_array()) type_error(key, n, "an array of strings");
  std::vector<std::string> out;
  const toml::array& arr = *n.as_array();
  for (std::size_t i = 0; i < arr.size(); ++i)
    out.push_back(as_string(key + "[" + std::to_string(i) + "]", arr[i]));
  return out;
}

int64_t ConfigTable::get_int(const std::string& key, int64_t def, int64_t min,
                             int64_t max) const {
  const toml::node* n = lookup(key);
  if (!n) return def;
  const int64_t v = as_int(key, *n);
  if (v < min || v > max)
    input_error(where(*n), "key '" + key_path(key) + "' must be in [" + std::to_string(min) +
                               ", " + std::to_string(max) + "], got " + std::to_string(v));
  return v;
}

int64_t ConfigTable::require_int(const std::string& key, int64_t min, int64_t max) const {
  if (!table_->contains(key)) {
    lookup(key);
    missing(key);
  }
  return get_int(key, 0, min, max);
}

double ConfigTable::get_double(const std::string& key, double def, double min,
                               double max) const {
  const toml::node* n = lookup(key);
  if (!n) return def;
  const double v = as_double(key, *n);
  if (!(v >= min && v <= max))  // written so that NaN fails too
    input_error(where(*n), "key '" + key_path(key) + "' must be in [" + fmt(min) + ", " +
                               fmt(max) + "], got " + fmt(v));
  return v;
}

double ConfigTable::require_double(const std::string& key, double min, double max) const {
  if (!table_->contains(key)) {
    lookup(key);
    missing(key);
  }
  return get_double(key, 0.0, min, max);
}

std::string ConfigTable::get_choice(const std::string& key, const std::string& def,
                                    std::initializer_list<std::string> allowed) const {
  const toml::node* n = lookup(key);
  if (!n) return def;
  const std::string v = as_string(key, *n);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    const std::string guess = closest(v, std::set<std::string>(allowed));
    input_error(where(*n),
                "key '" + key_path(key) + "' must be one of " + quoted_list(allowed) + "; got \"" +
                    v + "\"",
                guess.empty() ? std::string() : "did you mean \"" + guess + "\"?");
  }
  return v;
}

std::string ConfigTable::require_choice(const std::string& key,
                                        std::initializer_list<std::string> allowed) const {
  if (!table_->contains(key)) {
    lookup(key);
    missing(key);
  }
  return get_choice(key, "", allowed);
}

ConfigTable ConfigTable::table(const std::string& key) const {
  auto t = find_table(key);
  if (!t) missing(key);
  return *t;
}

std::optional<ConfigTable> ConfigTable::find_table(const std::string& key) const {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_table()) type_error(key, *n, "a table");
  return ConfigTable(*n->as_table(), key_path(key), source_name_, tracker_);
}

ConfigTable ConfigTable::table_or_empty(const std::string& key) const {
  static const toml::table kEmpty;
  auto t = find_table(key);
  return t ? *t : ConfigTable(kEmpty, key_path(key), source_name_, tracker_);
}

std::vector<ConfigTable> ConfigTable::tables(const std::string& key) const {
  const toml::node* n = lookup(key);
  std::vector<ConfigTable> out;
  if (!n) return out;
  if (!n->is_array()) {
    std::string hint;
    if (n->is_table()) hint = "write each element as [[" + key_path(key) + "]]";
    input_error(where(*n),
                "key '" + key_path(key) + "' must be an array of tables, got " +
                    type_name(n->type()),
                hint);
  }
  const toml::array& arr = *n->as_array();
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const std::string elem = key + "[" + std::to_string(i) + "]";
    if (!arr[i].is_table()) type_error(elem, arr[i], "a table");
    out.push_back(ConfigTable(*arr[i].as_table(), key_path(elem), source_name_, tracker_));
  }
  return out;
}

namespace {
struct Unknown {
  uint32_t line, column;  // line 0: set on the command line (sorted last)
  std::string where, key_path, hint;
};
}  // namespace

void ConfigTable::finish_table(const toml::table& table, const std::string& path) const {
  // Collect the whole subtree's unknown keys, then report the first in file order, which is what
  // a person reading the file expects (toml++ iterates keys sorted, not in file order).
  std::vector<Unknown> unknown;
  auto visit = [&](auto&& self, const toml::table& t, const std::string& p) -> void {
    const auto& read = tracker_->read[&t];
    const auto& ignored = tracker_->ignored[&t];
    for (const auto& [k, node] : t) {
      const std::string name(k.str());
      const std::string kp = p.empty() ? name : p + "." + name;
      if (ignored.count(name)) continue;
      if (read.count(name)) {
        if (node.is_table() && tracker_->opened.count(node.as_table()))
          self(self, *node.as_table(), kp);
        if (const toml::array* arr = node.as_array())
          for (std::size_t i = 0; i < arr->size(); ++i)
            if ((*arr)[i].is_table() && tracker_->opened.count((*arr)[i].as_table()))
              self(self, *(*arr)[i].as_table(), kp + "[" + std::to_string(i) + "]");
        continue;
      }
      // Prefer the key's own position (where the typo is); fall back to the value's.
      const toml::source_region& region =
          k.source().begin.line != 0 ? k.source() : node.source();
      const std::string guess = closest(name, read);
      const std::string loc = source_location(region, source_name_);
      unknown.push_back({loc == kCommandLine ? 0u : region.begin.line, region.begin.column, loc, kp,
                         guess.empty() ? std::string() : "did you mean '" + guess + "'?"});
    }
  };
  visit(visit, table, path);
  if (unknown.empty()) return;
  const auto first = std::min_element(unknown.begin(), unknown.end(), [](const auto& a, const auto& b) {
    const auto la = a.line == 0 ? UINT32_MAX : a.line, lb = b.line == 0 ? UINT32_MAX : b.line;
    return std::tie(la, a.column) < std::tie(lb, b.column);
  });
  input_error(first->where, "unknown key '" + first->key_path + "'", first->hint);
}

void ConfigTable::finish() const { finish_table(*table_, path_); }

}  // namespace opd::core
