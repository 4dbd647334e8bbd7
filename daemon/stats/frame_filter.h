// Which frames of a call stack poolshim-stats shows. By default every format leaves out the frames
// that are not the program's: the CUDA runtime's and driver's (libcudart*, libcuda.so*, and a
// statically linked cudart inside the executable, known by its function names), libc's start of the
// process or thread (_start, __libc_start_main, start_thread, clone3: the outermost run of libc
// frames), and, in a stack with Python frames, the interpreter's own frames (libpython, the python
// executable) and ctypes/libffi's, as memray does — so that a site reads from the user's call of
// cudaMalloc outward. --all-frames keeps them; --hide-module and --hide-function hide more.
#pragma once

#include <cstddef>
#include <regex>
#include <string>
#include <vector>

#include "stats/stats_file.h"

namespace poolshim::stats_tool {

// Why a frame is hidden by the built-in rules (none: it is shown).
enum class hidden_role { none, cuda_runtime, libc_start, python_interpreter, ffi };

struct frame_filter {
  bool builtin = true;  // false with --all-frames: only the user's own patterns hide frames
  std::vector<std::regex> modules;
  std::vector<std::regex> functions;
  std::vector<std::string> module_patterns, function_patterns;  // as given, for messages

  // Reads the filter's options: "--all-frames", "--hide-module REGEX", "--hide-function REGEX".
  // Returns 0 when args[i] is none of them, else how many arguments it took (1 or 2); -1 (with
  // *error set) for a missing value or a bad regular expression.
  int parse(const std::vector<std::string>& args, std::size_t i, std::string* error);
  // Whether anything would be hidden at all.
  bool active() const { return builtin || !modules.empty() || !functions.empty(); }
};

// The built-in role of frame i of `frames` (innermost first). `python`: the stack has Python frames.
// A statically linked cudart's frames are named by their function (cudaMalloc, __cudaRegister...,
// libcudart_static_<hash>, cudart::...) and count only without a source file or in the toolkit's
// headers, so a user's own function that happens to be named cuda... and has debug information
// stays; an unnamed frame inside the runtime's innermost run (a stripped static cudart) is the
// runtime's too.
std::vector<hidden_role> builtin_roles(const std::vector<frame>& frames);

// Which frames the filter hides (true: hidden), innermost first. When it would hide every frame,
// none is hidden (a stack with nothing of the program's still shows where it came from).
std::vector<bool> hidden_frames(const std::vector<frame>& frames, const frame_filter& filter);

// The frames that are shown; *hidden (when given) gets how many were left out.
std::vector<frame> visible_frames(const std::vector<frame>& frames, const frame_filter& filter,
                                  std::size_t* hidden = nullptr);

// Every site's frames cut to the visible ones (site.hidden counts those left out). Merging sites
// whose visible frames are now the same is the caller's (tool_util.h's visible_sites).
void hide_frames(std::vector<site>* sites, const frame_filter& filter);

}  // namespace poolshim::stats_tool
