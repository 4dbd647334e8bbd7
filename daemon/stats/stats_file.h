// Reading a stats file (include/poolshim/stats_file.h) for poolshim-stats: mapped read-only, every
// offset and count checked against the file's size before use, with a clear error for a missing,
// truncated, foreign or newer-version file. Symbolisation (libdw, offline, by each module's path
// and load bias) turns frame addresses into function, file and line; an address it cannot resolve
// is kept as module+offset, never dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "poolshim/stats_file.h"
#include "stats/python_symbols.h"

namespace poolshim::stats_tool {

struct file_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct frame {
  std::uint64_t pc = 0;
  std::string function;  // demangled; empty when unknown
  std::string file;      // source file, empty when unknown
  int line = 0;
  std::string module;    // the module's path; empty when the address is in none
  std::uint64_t offset = 0;  // pc - load bias (the address in the module's file)
  std::string text() const;  // "fn (file:line)", or "module+0xoffset"
};

struct site {
  std::uint32_t id = 0;
  std::vector<frame> frames;  // innermost first
  poolshim_stats_site counters{};
  std::int64_t at_process_peak = 0;
};

struct kind_figures {
  int device = 0;
  int kind = 0;  // 0 device, 1 pinned, 2 managed, 3 async, 4 vmm
  poolshim_stats_kind counters{};
};

class stats_file {
 public:
  explicit stats_file(const std::string& path);  // throws file_error
  ~stats_file();
  stats_file(const stats_file&) = delete;
  stats_file& operator=(const stats_file&) = delete;

  const poolshim_stats_header& header() const { return *header_; }
  const std::string& path() const { return path_; }
  bool running() const;  // no clean exit recorded and the process is alive
  std::vector<site> sites(bool symbolise) const;  // every site with events
  std::vector<kind_figures> kinds() const;        // every device and kind with events
  std::vector<poolshim_stats_live> live() const;  // live allocations (leaks, after exit)
  std::uint64_t events() const;                   // allocations and frees recorded
  // The event ring's events still held, oldest first (empty without POOLSHIM_STATS_EVENTS).
  std::vector<poolshim_stats_event> event_ring() const;

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  const poolshim_stats_header* header_ = nullptr;
  std::unique_ptr<python_symbols> python_;
  std::vector<const poolshim_stats_shard*> shards() const;
};

const char* kind_name(int kind);  // "device", "pinned", ...

// The stats files in a folder (newest first); *skipped gets one line per file that is not one.
std::vector<std::string> find_files(const std::string& dir, std::vector<std::string>* skipped);

}  // namespace poolshim::stats_tool
