// Writes poolshim-stats' HTML report (daemon/stats/html_report.h) for hand-made data whose names
// try to break the page: a function named "</script><script>...", a file name with quotes, "<!--"
// and "<script" in the command line, template and operator names with < > &, U+2028, a byte that
// is not UTF-8, and a frame in PyTorch's caching allocator (the framework note and badge).
// stats_html_test.sh loads the page in headless Chromium: nothing injected may run or appear as
// markup, the data must parse, and the flame graph must show the hostile names as text.
// usage: stats_html_fixture OUT.html
#include <cstdio>
#include <string>
#include <vector>

#include "stats/html_report.h"

namespace tool = poolshim::stats_tool;

namespace {

constexpr std::int64_t k_mib = 1 << 20;

tool::frame make_frame(std::string function, std::string file, int line, std::string module, std::uint64_t offset) {
  tool::frame f;
  f.pc = 0x400000 + offset;
  f.function = std::move(function);
  f.file = std::move(file);
  f.line = line;
  f.module = std::move(module);
  f.offset = offset;
  return f;
}

tool::site make_site(std::uint32_t id, std::int64_t bytes, std::vector<tool::frame> inner) {
  tool::site s;
  s.id = id;
  s.at_process_peak = bytes;
  s.counters.allocs = 2;
  s.counters.frees = 1;
  s.counters.bytes_allocated = static_cast<std::uint64_t>(2 * bytes);
  s.counters.bytes_freed = static_cast<std::uint64_t>(bytes);
  s.counters.live_bytes = bytes;
  s.counters.live_count = 1;
  s.counters.largest = static_cast<std::uint64_t>(bytes);
  s.counters.own_peak = bytes;
  inner.insert(inner.begin(), make_frame("cudaMalloc", "", 0, "/usr/lib/libcudart.so.13", 0x1234));
  inner.push_back(make_frame("main", "/src/app.cpp", 10, "/opt/app", 0x99));
  s.frames = std::move(inner);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: stats_html_fixture OUT.html\n");
    return 2;
  }
  tool::html_input in;
  in.file = "/dev/shm/poolshim-0-4242-1.stats";
  in.state = "exited";
  in.exe = "/opt/evil \"dir\"/it's <b>bold</b> & more/app";
  in.cmdline = "app --name '</script><script>document.title=\"PWNED\"</script>' <!-- <script> &amp;";
  in.pid = 4242;
  in.start_ns = 1700000000000000000ull;
  in.end_ns = in.start_ns + 2500000000ull;
  in.now_ns = in.end_ns + 1000000000ull;
  in.peak_bytes = 14 * k_mib;
  in.peak_ns = in.start_ns + 1200000000ull;
  in.live_bytes = 14 * k_mib;
  in.live_count = 4;
  in.events = 12;
  tool::kind_figures k;
  k.device = 0;
  k.kind = 0;
  k.counters.allocs = 8;
  k.counters.frees = 4;
  k.counters.bytes_allocated = 28 * k_mib;
  k.counters.live_bytes = 14 * k_mib;
  k.counters.peak_bytes = 14 * k_mib;
  k.counters.peak_ns = in.peak_ns;
  in.kinds.push_back(k);
  const std::string evil = "</script><script>document.body.setAttribute('data-pwned','1')</script>";
  in.sites.push_back(make_site(1, 6 * k_mib, {make_frame(evil, "/src/a\"b'c <x> & y.cpp", 7, "/opt/app", 0x10)}));
  in.sites.push_back(make_site(2, 5 * k_mib,
                               {make_frame("bool std::operator<(std::vector<int, alloc<int> > const&, q&)",
                                           "/src/q&a <x>.cpp", 8, "/opt/app", 0x20)}));
  in.sites.push_back(make_site(3, 2 * k_mib,
                               {make_frame("c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator::malloc("
                                           "signed char, unsigned long, CUstream_st*)",
                                           "", 0, "/py/torch/lib/libc10_cuda.so", 0x30)}));
  in.sites.push_back(make_site(
      4, 1 * k_mib, {make_frame(std::string("line\xe2\x80\xa8sep<!--\xff"), "/src/u.cpp", 9, "/opt/app", 0x40)}));
  in.top = 10;
  in.sort = "peak";
  std::FILE* out = std::fopen(argv[1], "w");
  if (out == nullptr) {
    std::perror(argv[1]);
    return 1;
  }
  const bool ok = tool::write_html(out, in);
  return std::fclose(out) == 0 && ok ? 0 : 1;
}
