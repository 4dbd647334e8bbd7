// Small text helpers for poolshim-stats' reports (labels.cpp, html_report.cpp): JSON string
// quoting (optionally safe inside an HTML <script> element), HTML escaping, byte counts for people,
// and word wrapping for the 100-column text report.
#pragma once

#include <cstdint>
#include <string>

namespace poolshim::stats_tool {

// A JSON string literal of s, quotes included. Control characters are \u-escaped and bytes that
// are not valid UTF-8 become U+FFFD, so the result is always valid JSON. With html_safe, <, >, &,
// U+2028 and U+2029 are \u-escaped too: the literal can then stand inside <script> (no "</script>",
// "<!--" or "<script" can appear in it) and in any HTML text.
std::string json_quote(const std::string& s, bool html_safe = false);

// s with &, <, >, " and ' replaced by character references: safe in HTML text and in a quoted
// attribute value. Bytes that are not valid UTF-8 become U+FFFD (the page is UTF-8).
std::string html_escape(const std::string& s);

// "512 B", "1.5 MiB", ...
std::string bytes_text(long double bytes);

// Local time "YYYY-MM-DD HH:MM:SS" of a CLOCK_REALTIME nanosecond stamp; "-" for 0.
std::string time_text(std::uint64_t ns);

// text word-wrapped to `width` columns; the first line starts with `first`, the others with
// `indent`. Words longer than a line stand alone on theirs. Ends with a newline.
std::string wrap(const std::string& text, std::size_t width, const std::string& first, const std::string& indent);

}  // namespace poolshim::stats_tool
