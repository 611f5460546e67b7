// SHA-256 (FIPS 180-4): content hashes that checkpoints carry (tokenizer files in a tokenizer's
// describe(), a teacher model's identity); the same digest `sha256sum` prints.
#pragma once

#include <string>
#include <string_view>

namespace opd::core {

// Lower-case hex digest of bytes.
std::string sha256_hex(std::string_view bytes);

}  // namespace opd::core
