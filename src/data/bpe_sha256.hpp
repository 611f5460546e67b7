// SHA-256 (FIPS 180-4), for the content hash of tokenizer files that a tokenizer's describe()
// carries into checkpoints (the same digest `sha256sum` prints).
#pragma once

#include <string>
#include <string_view>

namespace opd::data {

// Lower-case hex digest of bytes.
std::string sha256_hex(std::string_view bytes);

}  // namespace opd::data
