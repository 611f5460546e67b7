// Final-answer extraction ("Answer: X", "\boxed{X}") and exact-match verification of responses.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace opd::data {

// Markers: "answer" (the rest of the line after the last "Answer:"), "boxed" (the contents of the
// last "\boxed{...}", braces balanced; if that last one is unterminated, as in a truncated
// generation, there is no answer), "auto" (whichever of the two occurs last in the response).
// An unknown marker is an Input error. Returns nullopt when there is no marker or it is empty.
// The answer is normalised with normalize_answer.
std::optional<std::string> extract_answer(std::string_view response, std::string_view marker);

// Trims whitespace and one trailing '.'; an integer ("+007", "-0", "1,035") becomes its canonical
// decimal ("7", "0", "1035"); anything else is returned trimmed, unchanged otherwise.
std::string normalize_answer(std::string_view text);

// True iff an answer is extracted and equals the normalised reference exactly.
bool verify(std::string_view response, std::string_view reference, std::string_view marker);

}  // namespace opd::data
