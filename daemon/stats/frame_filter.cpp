// Which frames poolshim-stats shows (frame_filter.h). Rules by module first (a shared library is
// all runtime or none), by function name only where the module cannot tell: a static cudart lives
// in the executable, next to the user's code, and an interpreter may be linked into one too.
#include "stats/frame_filter.h"

#include <algorithm>

namespace poolshim::stats_tool {
namespace {

bool starts(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The qualified name of a demangled function without its parameters, template arguments or return
// type: "cudaError cudaMalloc<float>(float**, unsigned long)" -> "cudaMalloc",
// "(anonymous namespace)::f(int)" -> "{anon}::f". Only for matching the runtime's and the
// interpreter's names: an odd user name may come out odd, never matches by accident of parsing.
std::string core_name(std::string fn) {
  for (std::size_t at; (at = fn.find("(anonymous namespace)")) != std::string::npos;) fn.replace(at, 21, "{anon}");
  std::string out;
  std::size_t word = 0;  // where the last word at depth 0 starts (after a return type's space)
  int angle = 0, brace = 0;
  for (std::size_t i = 0; i < fn.size(); ++i) {
    const char c = fn[i];
    if (angle == 0 && brace == 0 && c == '(') {
      if (out.size() >= 8 && out.compare(out.size() - 8, 8, "operator") == 0 && i + 1 < fn.size() && fn[i + 1] == ')') {
        out += "()";
        ++i;
        continue;
      }
      break;  // the parameter list
    }
    if (brace == 0) {  // template arguments are dropped (a lambda's {lambda(...)#1} is kept whole)
      if (c == '<') {
        ++angle;
        continue;
      }
      if (angle > 0) {
        angle -= c == '>';
        continue;
      }
    }
    if (c == '{') ++brace;
    if (c == '}' && brace > 0) --brace;
    if (c == ' ' && brace == 0) {
      word = out.size() + 1;
    }
    out += c;
  }
  return out.substr(std::min(word, out.size()));
}

// A header of the CUDA toolkit (/usr/local/cuda/include/..., /usr/local/cuda-13.0/targets/x86_64-
// linux/include/..., or Debian's /usr/include/cuda_runtime*.h).
bool toolkit_file(const std::string& file) {
  static const std::regex k_include(R"((^|/)cuda(-[0-9][0-9.]*)?/(targets/[^/]+/)?include/)");
  const std::string b = base_name(file);
  return starts(b, "cuda_runtime") || std::regex_search(file, k_include);
}

// The runtime API's names, in a statically linked cudart: the API (cudaMalloc, cudaMallocAsync_ptsz),
// the registration and launch entry points nvcc's code calls (__cudaRegisterFatBinary,
// __cudaPushCallConfiguration), its internal symbols (libcudart_static_<sha1> in CUDA 12 and 13;
// cudart::... and __cudart<N> in older ones).
bool static_cudart_name(const std::string& core) {
  static const std::regex k_names(R"(^(cuda[A-Z]\w*|__cuda\w+|libcudart_static_[0-9a-f]+|cudart::.*|__cudart\w*)$)");
  return std::regex_match(core, k_names);
}

bool cuda_runtime_frame(const frame& f) {
  const std::string m = base_name(f.module);
  // libpoolshim.so itself (its frames are dropped when captured; one that slipped through is the
  // allocator's), not the libpoolshim_buffers.so or test libraries named after it.
  if (starts(m, "libcudart") || starts(m, "libcuda.so") || m == "libpoolshim.so") return true;
  if (f.module == "[python]") return false;
  const bool toolkit = !f.file.empty() && toolkit_file(f.file);
  // The runtime's own inline wrappers (cudaMalloc<T> in cuda_runtime.h), inlined into the caller.
  if (toolkit && (starts(base_name(f.file), "cuda_runtime") || f.file.find("/crt/") != std::string::npos)) return true;
  return !f.function.empty() && (f.file.empty() || toolkit) && static_cudart_name(core_name(f.function));
}

bool libc_frame(const frame& f) {
  const std::string m = base_name(f.module);
  if (starts(m, "libc.so") || starts(m, "libc-") || starts(m, "libpthread")) return true;
  // A static executable's start (and any executable's _start, which is in the executable).
  const std::string c = core_name(f.function);
  return f.file.empty() && (c == "_start" || c == "__libc_start_main" || c == "__libc_start_call_main");
}

bool interpreter_frame(const frame& f) {
  if (f.module == "[python]") return false;
  static const std::regex k_python_module(R"(^(libpython\d.*|python\d[\d.]*[a-z]*)$)");
  if (std::regex_match(base_name(f.module), k_python_module)) return true;
  // An interpreter linked into another executable: its evaluation loop and start-up by name.
  static const std::regex k_interpreter(
      R"(^(_?PyEval_\w+|_?PyObject_\w+|_?PyVectorcall_\w+|_PyFunction_\w+|_?PyCFunction_\w+|_?PyRun_\w+|pyrun_\w+|)"
      R"(pymain_\w+|Py_RunMain|Py_BytesMain|Py_Main|run_mod|run_eval_code_obj|cfunction_\w+|method_vectorcall\w*|)"
      R"(slot_tp_\w+|_PyEval_\w+)$)");
  return !f.function.empty() && std::regex_match(core_name(f.function), k_interpreter);
}

bool ffi_frame(const frame& f) {
  const std::string m = base_name(f.module);
  if (starts(m, "_ctypes") || starts(m, "libffi")) return true;
  static const std::regex k_ffi(R"(^(ffi_call\w*|_call_function_pointer|_ctypes_callproc|PyCFuncPtr_call)$)");
  return !f.function.empty() && std::regex_match(core_name(f.function), k_ffi);
}

bool unnamed(const frame& f) { return f.function.empty() && f.module != "[python]"; }

}  // namespace

int frame_filter::parse(const std::vector<std::string>& args, std::size_t i, std::string* error) {
  const std::string& a = args[i];
  if (a == "--all-frames") {
    builtin = false;
    return 1;
  }
  if (a != "--hide-module" && a != "--hide-function") return 0;
  if (i + 1 >= args.size()) {
    *error = a + " needs a value";
    return -1;
  }
  const std::string& v = args[i + 1];
  try {
    std::regex re(v, std::regex::ECMAScript | std::regex::optimize);
    (a == "--hide-module" ? modules : functions).push_back(std::move(re));
    (a == "--hide-module" ? module_patterns : function_patterns).push_back(v);
  } catch (const std::regex_error& e) {
    *error = "bad " + a + " '" + v + "' (" + e.what() + ")";
    return -1;
  }
  return 2;
}

std::vector<hidden_role> builtin_roles(const std::vector<frame>& frames) {
  const std::size_t n = frames.size();
  std::vector<hidden_role> role(n, hidden_role::none);
  const bool python = std::any_of(frames.begin(), frames.end(), [](const frame& f) { return f.module == "[python]"; });
  for (std::size_t i = 0; i < n; ++i) {
    const frame& f = frames[i];
    if (cuda_runtime_frame(f))
      role[i] = hidden_role::cuda_runtime;
    else if (python && ffi_frame(f))
      role[i] = hidden_role::ffi;
    else if (python && interpreter_frame(f))
      role[i] = hidden_role::python_interpreter;
  }
  // The innermost run of the runtime's frames and unnamed ones: up to its last runtime frame, all
  // of it is the runtime's (a stripped static cudart has functions without names between its API
  // and the driver).
  std::size_t last = n;
  for (std::size_t i = 0; i < n && (role[i] == hidden_role::cuda_runtime || unnamed(frames[i])); ++i)
    if (role[i] == hidden_role::cuda_runtime) last = i;
  if (last != n)
    for (std::size_t i = 0; i < last; ++i) role[i] = hidden_role::cuda_runtime;
  // libc's start of the process or thread: the outermost run of its frames (libc frames further in,
  // such as qsort calling back into the program, stay).
  for (std::size_t i = n; i-- > 0 && libc_frame(frames[i]);) role[i] = hidden_role::libc_start;
  return role;
}

std::vector<bool> hidden_frames(const std::vector<frame>& frames, const frame_filter& filter) {
  std::vector<bool> out(frames.size(), false);
  if (!filter.active()) return out;
  std::vector<hidden_role> role;
  if (filter.builtin) role = builtin_roles(frames);
  bool all = !frames.empty();
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const frame& f = frames[i];
    bool hide = filter.builtin && role[i] != hidden_role::none;
    for (const std::regex& re : filter.modules) hide = hide || std::regex_search(f.module, re);
    for (const std::regex& re : filter.functions)
      hide = hide || std::regex_search(f.function.empty() ? f.text() : f.function, re);
    out[i] = hide;
    all = all && hide;
  }
  if (all) std::fill(out.begin(), out.end(), false);
  return out;
}

std::vector<frame> visible_frames(const std::vector<frame>& frames, const frame_filter& filter, std::size_t* hidden) {
  const std::vector<bool> hide = hidden_frames(frames, filter);
  std::vector<frame> out;
  out.reserve(frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i)
    if (!hide[i]) out.push_back(frames[i]);
  if (hidden != nullptr) *hidden = frames.size() - out.size();
  return out;
}

void hide_frames(std::vector<site>* sites, const frame_filter& filter) {
  for (site& s : *sites) {
    std::size_t hidden = 0;
    s.frames = visible_frames(s.frames, filter, &hidden);
    s.hidden = static_cast<std::uint32_t>(hidden);
  }
}

}  // namespace poolshim::stats_tool
