// The frame filter of poolshim-stats (daemon/stats/frame_filter.h) on hand-made stacks: a shared
// cudart, a static cudart inside the executable (what nvcc links by default, which no simulator
// run can show), libc's start, a Python stack through ctypes, a user's lambda and a user's function
// named like the runtime's, the user's own patterns and --all-frames.
#include "stats/frame_filter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace poolshim::stats_tool {
namespace {

frame fr(std::string function, std::string file, int line, std::string module) {
  frame f;
  f.function = std::move(function);
  f.file = std::move(file);
  f.line = line;
  f.module = std::move(module);
  f.pc = 0x1000;
  return f;
}

const char* k_exe = "/home/u/app";

std::vector<std::string> names(const std::vector<frame>& frames) {
  std::vector<std::string> out;
  for (const frame& f : frames) out.push_back(f.function.empty() ? f.text() : f.function);
  return out;
}

TEST(FrameFilter, SharedRuntimeAndLibcStartAreHiddenAndTheCallSiteComesFirst) {
  const std::vector<frame> stack = {
      fr("operator()", "runtime_internal.h", 193, "/build/tests/sim/libcudart.so.13"),
      fr("cudaMalloc", "runtime_api.cpp", 40, "/build/tests/sim/libcudart.so.13"),
      fr("site_peak()", "/src/app.cpp", 30, k_exe),
      fr("main", "/src/app.cpp", 50, k_exe),
      fr("__libc_start_call_main", "", 0, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
      fr("__libc_start_main", "", 0, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
      fr("_start", "", 0, k_exe),
  };
  std::size_t hidden = 0;
  const std::vector<frame> shown = visible_frames(stack, frame_filter{}, &hidden);
  EXPECT_EQ(names(shown), (std::vector<std::string>{"site_peak()", "main"}));
  EXPECT_EQ(hidden, 5u);
  frame_filter all;
  all.builtin = false;
  EXPECT_EQ(visible_frames(stack, all).size(), stack.size());
}

TEST(FrameFilter, StaticCudartInTheExecutableIsKnownByItsNames) {
  // nvcc's default: the runtime is inside the executable, stripped of lines; its internals are
  // named libcudart_static_<sha1> (CUDA 12, 13), some have no symbol at all.
  const std::vector<frame> stack = {
      fr("", "", 0, "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
      fr("", "", 0, k_exe),
      fr("libcudart_static_4d8b1a9c0e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b", "", 0, k_exe),
      fr("cudaMalloc", "", 0, k_exe),
      fr("cudaError cudaMalloc<float>(float**, unsigned long)",
         "/usr/local/cuda/targets/x86_64-linux/include/cuda_runtime.h", 210, k_exe),
      fr("load_weights(Model&)", "/src/model.cu", 88, k_exe),
      fr("", "", 0, k_exe),  // the user's own code without symbols stays
      fr("main", "/src/main.cpp", 9, k_exe),
  };
  const std::vector<frame> shown = visible_frames(stack, frame_filter{});
  ASSERT_EQ(shown.size(), 3u) << ::testing::PrintToString(names(shown));
  EXPECT_EQ(shown[0].function, "load_weights(Model&)");
  EXPECT_EQ(shown[1].function, "");
  EXPECT_EQ(shown[2].function, "main");
  const std::vector<hidden_role> roles = builtin_roles(stack);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(roles[i], hidden_role::cuda_runtime) << i;
}

TEST(FrameFilter, UserCodeNamedLikeTheRuntimeAndUserLambdasStay) {
  const std::vector<frame> stack = {
      fr("cudaMalloc", "runtime_api.cpp", 40, "/opt/x/libcudart.so.13"),
      fr("cudaMallocWrapper(void**, unsigned long)", "/src/wrap.cpp", 12, k_exe),  // has a file: the user's
      fr("main::{lambda(unsigned long)#2}::operator()(unsigned long) const", "/src/main.cpp", 31, k_exe),
      fr("main", "/src/main.cpp", 40, k_exe),
  };
  const std::vector<frame> shown = visible_frames(stack, frame_filter{});
  ASSERT_EQ(shown.size(), 3u);
  EXPECT_EQ(shown[0].function, "cudaMallocWrapper(void**, unsigned long)");
  EXPECT_EQ(shown[1].line, 31);
  EXPECT_NE(shown[1].text().find("operator()"), std::string::npos);
  EXPECT_NE(shown[1].text().find("main.cpp:31"), std::string::npos);
}

TEST(FrameFilter, PythonStacksHideTheInterpreterAndCtypesButKeepExtensions) {
  const char* py = "/usr/bin/python3.11";
  const std::vector<frame> stack = {
      fr("cudaMalloc", "", 0, "/usr/lib/libcudart.so.13"),
      fr("ffi_call_unix64", "", 0, "/usr/lib/x86_64-linux-gnu/libffi.so.8"),
      fr("_ctypes_callproc", "", 0, "/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so"),
      fr("c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator::malloc(int, unsigned long)", "", 0,
         "/venv/torch/lib/libc10_cuda.so"),
      fr("_PyObject_MakeTpCall", "", 0, py),
      fr("malloc", "/src/infer.py", 6, "[python]"),
      fr("_PyEval_EvalFrameDefault", "", 0, py),
      fr("attention", "/src/infer.py", 12, "[python]"),
      fr("PyEval_EvalCode", "", 0, py),
      fr("pymain_run_file_obj", "", 0, py),
      fr("main", "", 0, py),
      fr("__libc_start_main", "", 0, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
      fr("_start", "", 0, py),
  };
  const std::vector<frame> shown = visible_frames(stack, frame_filter{});
  EXPECT_EQ(names(shown),
            (std::vector<std::string>{
                "c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator::malloc(int, unsigned long)", "malloc",
                "attention"}));
  // Without Python frames (an unsupported interpreter: native frames only), the interpreter's
  // frames are all there is to say where the call came from: they stay.
  std::vector<frame> native;
  for (const frame& f : stack)
    if (f.module != "[python]") native.push_back(f);
  const std::vector<frame> native_shown = visible_frames(native, frame_filter{});
  EXPECT_EQ(native_shown.front().function, "ffi_call_unix64") << "libffi is hidden only in stacks with Python frames";
  EXPECT_EQ(native_shown.back().function, "main");
}

TEST(FrameFilter, UserPatternsHideMoreAndAllFramesKeepsTheirs) {
  const std::vector<frame> stack = {
      fr("cudaMalloc", "", 0, "/usr/lib/libcudart.so.13"),
      fr("thrust::detail::allocate(unsigned long)", "/usr/include/thrust/alloc.h", 5, k_exe),
      fr("build()", "/src/b.cpp", 7, "/src/libmine.so"),
      fr("main", "/src/main.cpp", 3, k_exe),
  };
  frame_filter f;
  std::string error;
  EXPECT_EQ(f.parse({"--hide-function", "^thrust::"}, 0, &error), 2);
  EXPECT_EQ(names(visible_frames(stack, f)), (std::vector<std::string>{"build()", "main"}));
  EXPECT_EQ(f.parse({"--hide-module", "libmine"}, 0, &error), 2);
  EXPECT_EQ(names(visible_frames(stack, f)), (std::vector<std::string>{"main"}));
  EXPECT_EQ(f.parse({"--all-frames"}, 0, &error), 1);
  EXPECT_EQ(names(visible_frames(stack, f)), (std::vector<std::string>{"cudaMalloc", "main"}));
  EXPECT_EQ(f.parse({"--top"}, 0, &error), 0);
  EXPECT_EQ(f.parse({"--hide-function", "("}, 0, &error), -1);
  EXPECT_NE(error.find("bad --hide-function"), std::string::npos) << error;
  EXPECT_EQ(f.parse({"--hide-module"}, 0, &error), -1);
}

TEST(FrameFilter, AStackThatWouldLoseEveryFrameKeepsThemAll) {
  const std::vector<frame> stack = {
      fr("cudaMalloc", "", 0, "/usr/lib/libcudart.so.13"),
      fr("__libc_start_main", "", 0, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
  };
  EXPECT_EQ(visible_frames(stack, frame_filter{}).size(), 2u);
}

TEST(FrameFilter, HideFramesCountsWhatEachSiteLost) {
  std::vector<site> sites(2);
  sites[0].frames = {fr("cudaMalloc", "", 0, "/l/libcudart.so.13"), fr("f()", "/s/a.cpp", 1, k_exe)};
  sites[1].frames = {fr("g()", "/s/a.cpp", 2, k_exe)};
  hide_frames(&sites, frame_filter{});
  EXPECT_EQ(sites[0].hidden, 1u);
  EXPECT_EQ(sites[0].frames.size(), 1u);
  EXPECT_EQ(sites[1].hidden, 0u);
}

}  // namespace
}  // namespace poolshim::stats_tool
