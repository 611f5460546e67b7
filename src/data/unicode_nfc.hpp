// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
// composition; UAX #15), for tokenizer.json files whose normalizer is {"type": "NFC"}.
#pragma once

#include <string>
#include <string_view>

namespace opd::data::unicode {

// True when every character of text is NFC-stable on its own (NFC_QC = Yes and combining class
// 0), which proves the text is already in NFC; false does not mean it is not.
bool nfc_quick_check(std::string_view text);

// The NFC form of text. Bytes that are not valid UTF-8 are copied through unchanged and break
// the text into separately normalised runs.
std::string nfc(std::string_view text);

}  // namespace opd::data::unicode
