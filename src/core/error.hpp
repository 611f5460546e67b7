// opd::Error: the one exception type of opd. It carries what went wrong, where (the file, key or
// tensor concerned) and a hint on how to fix it, plus whether it is the user's input at fault
// (exit status 2) or an internal failure (exit status 1).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace opd {

enum class ErrorKind {
  Input,     // bad config, file, layout, tokenizer...: the user can fix it; exit status 2
  Internal,  // a broken invariant inside opd; exit status 1
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string what, std::string where = {}, std::string hint = {});

  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  const std::string& where() const { return where_; }
  const std::string& hint() const { return hint_; }
  int exit_status() const { return kind_ == ErrorKind::Input ? 2 : 1; }

 private:
  ErrorKind kind_;
  std::string message_, where_, hint_;
};

// Input errors: "where: what (hint)".
[[noreturn]] void input_error(const std::string& where, const std::string& what,
                              const std::string& hint = {});
[[noreturn]] void internal_error(const std::string& where, const std::string& what);

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace opd

// Internal invariant check: a failure is a bug in opd, not the user's fault.
#define OPD_CHECK(cond, ...)                                                              \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::opd::internal_error(::opd::detail::concat(__FILE__, ":", __LINE__),               \
                            ::opd::detail::concat("check failed: " #cond ": ", __VA_ARGS__)); \
  } while (0)
