#include "core/error.hpp"

namespace opd {

namespace {
std::string format(const std::string& what, const std::string& where, const std::string& hint) {
  std::string s;
  if (!where.empty()) s += where + ": ";
  s += what;
  if (!hint.empty()) s += " (" + hint + ")";
  return s;
}
}  // namespace

Error::Error(ErrorKind kind, std::string what, std::string where, std::string hint)
    : std::runtime_error(format(what, where, hint)),
      kind_(kind),
      message_(std::move(what)),
      where_(std::move(where)),
      hint_(std::move(hint)) {}

void input_error(const std::string& where, const std::string& what, const std::string& hint) {
  throw Error(ErrorKind::Input, what, where, hint);
}

void internal_error(const std::string& where, const std::string& what) {
  throw Error(ErrorKind::Internal, what, where);
}

}  // namespace opd
