// Reading a stats file (include/poolshim/stats_file.h) for poolshim-stats: opened without blocking
// or following a symbolic link, a regular file only, of at most k_max_file_bytes, copied into
// memory with pread (never mapped: a file its owner truncates while it is read would raise SIGBUS
// in a mapping; a copy that comes up short is reported as truncated); the header's layout (every
// offset, count and capacity) is copied once and checked against the file's size — offsets 8-byte
// aligned, no sum that can wrap — and only that copy is used to index the data, so a writer
// that changes the header later cannot move a read outside the file. Every count the file declares
// is bounded by its size, and each stack by the format's depth cap (POOLSHIM_STATS_MAX_DEPTH), with
// all stacks' frames together by the arena, before anything is allocated for them. A clear error for a missing,
// truncated, foreign, corrupt or newer-version file. Symbolisation (libdw, offline, by each module's path
// and load bias) turns frame addresses into function, file and line; an address it cannot resolve
// is kept as module+offset, never dropped.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
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
// A file of another user met where only the caller's own are read (a folder's files).
struct not_mine_error : file_error {
  using file_error::file_error;
};

// A fixed-size text field of the file (exe, cmdline, a module's path) up to its first NUL: the
// shim NUL-terminates them, a damaged or hostile file may not.
template <std::size_t N>
std::string field_text(const char (&field)[N]) {
  return std::string(field, strnlen(field, N));
}

// A path's last part ("/usr/lib/libc.so.6" -> "libc.so.6"), for the reports' names.
inline std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// An address as the reports write one: "0x7f12...".
inline std::string hex_text(std::uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

struct frame {
  std::uint64_t pc = 0;
  std::string function;  // demangled; empty when unknown
  std::string file;      // source file, empty when unknown
  int line = 0;
  std::string module;        // the module's path; empty when the address is in none
  std::uint64_t offset = 0;  // pc - load bias (the address in the module's file)
  std::string text() const;  // "fn (file:line)", "fn (module+0xoffset)" without lines, "module+0xoffset"
};

struct site {
  std::uint32_t id = 0;
  std::vector<frame> frames;  // innermost first
  poolshim_stats_site counters{};
  std::int64_t at_process_peak = 0;
  // The stack was cut at the file's depth cap (POOLSHIM_STATS_CUT_TAG): its outermost frames are
  // missing. whole_depth: how many frames the whole stack had (0: unknown); whole_depth_more: at
  // least that many (the shim stopped counting).
  bool cut = false;
  std::uint32_t whole_depth = 0;
  bool whole_depth_more = false;
  // Set by the report's frame filter (frame_filter.h): frames left out of `frames`, and how many
  // stacks that differ only in those were folded into this site (1: none).
  std::uint32_t hidden = 0;
  std::uint32_t folded = 1;
  // Set when sites are merged (tool_util.h's merge_by_key): the other stacks' ids this site stands
  // for besides `id` (their lines over time add to its own).
  std::vector<std::uint32_t> merged;
};

struct kind_figures {
  int device = 0;
  int kind = 0;  // 0 device, 1 pinned, 2 managed, 3 async, 4 vmm
  poolshim_stats_kind counters{};
};

// Allocations by size bucket (poolshim_stats_size_bucket), per kind over every device.
using size_counts = std::array<std::uint64_t, POOLSHIM_STATS_SIZE_BUCKETS>;

// The file's timeline (struct poolshim_stats_timeline): live bytes sampled over time.
struct timeline {
  struct column {
    int device = 0, kind = 0;
  };
  struct site_live {
    std::uint32_t stack = 0;  // a stack id the shim followed at this sample
    std::int64_t live = 0;    // its live bytes then
  };
  struct sample {
    std::uint64_t ns = 0;
    std::int64_t total = 0;          // every kind
    std::vector<std::int64_t> live;  // one per column
    std::vector<site_live> sites;    // the call sites followed then (the largest own peaks found)
  };
  std::uint64_t interval_ns = 0;  // between samples at the end (it doubles each time the file is full)
  std::vector<column> columns;
  std::vector<sample> samples;  // oldest first, times rising
};

// Frees a stats_file's copy of a file (delete[], or munmap of `bytes` when it was mapped).
struct file_buffer_free {
  std::size_t bytes = 0;
  void operator()(std::uint64_t* p) const noexcept;
};

class stats_file {
 public:
  // Throws file_error; with only_mine, not_mine_error for a file the effective user does not own
  // (files found in a folder: /dev/shm is writable by everyone, and another user's file could
  // pose as the newest or as any pid's). A path the user names may be anyone's file.
  // With what == header_only, only the header is read and checked (the regions' bounds, not the
  // stacks): enough for header(), exe(), cmdline(), running() and the file's identity, and a
  // fraction of the cost (a file is ~18 MB); every other accessor then throws std::logic_error.
  enum class part { whole, header_only };
  explicit stats_file(const std::string& path, bool only_mine = false, part what = part::whole);
  ~stats_file();
  stats_file(const stats_file&) = delete;
  stats_file& operator=(const stats_file&) = delete;

  // The header as last read (at open, or at refresh()), for its figures. Its offsets and counts
  // are the writer's: this class indexes the file with its checked copy only.
  const poolshim_stats_header& header() const { return *header_; }
  const std::string& path() const { return path_; }
  std::string exe() const { return field_text(header_->exe); }
  std::string cmdline() const { return field_text(header_->cmdline); }
  uid_t owner() const { return owner_; }                       // the file's owner (fstat)
  std::uint64_t bytes_on_disk() const { return disk_bytes_; }  // blocks held (st_blocks * 512)
  dev_t device() const { return dev_; }
  ino_t inode() const { return ino_; }
  // Reads the file again (a running process's figures change): same size, same layout, stacks
  // checked again. Throws file_error (truncated, replaced, corrupt); the old data is kept then.
  void refresh();
  bool running() const;  // no clean exit recorded and the process (pid > 0) is alive
  // Every site with events; with every_stack, also stacks that counted none (a failed allocation's,
  // which only the event ring names).
  std::vector<site> sites(bool symbolise, bool every_stack = false) const;
  std::vector<kind_figures> kinds() const;        // every device and kind with events
  std::vector<poolshim_stats_live> live() const;  // live allocations (leaks, after exit)
  std::uint64_t events() const;                   // allocations and frees recorded
  // The event ring's events still held, oldest first (empty without POOLSHIM_STATS_EVENTS).
  std::vector<poolshim_stats_event> event_ring() const;
  // Live bytes over time (empty samples: none yet).
  stats_tool::timeline timeline() const;
  // Allocations by size bucket, per kind (index: 0 device ... 4 vmm), every device together.
  std::array<size_counts, POOLSHIM_STATS_KINDS> kind_sizes() const;

 private:
  std::string path_;
  int fd_ = -1;
  // Anonymous memory of its own, 2 MiB aligned and advised to use huge pages: a file is ~18 MB,
  // and filling 4 KiB pages one fault at a time took most of a report's time.
  using buffer = std::unique_ptr<std::uint64_t[], file_buffer_free>;
  static buffer make_buffer(std::size_t bytes);  // throws std::bad_alloc
  buffer data_;                                  // the file's bytes (8-byte aligned), size_ of them
  const void* map_ = nullptr;                    // data_.get()
  std::size_t size_ = 0;
  const poolshim_stats_header* header_ = nullptr;
  poolshim_stats_header layout_{};  // the header as checked at open: offsets and counts come from here
  uid_t owner_ = 0;
  std::uint64_t disk_bytes_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::unique_ptr<python_symbols> python_;
  std::vector<const poolshim_stats_shard*> shards() const;
  void check_layout();                                     // throws file_error
  void check_stacks(const unsigned char* data) const;      // every stack's depth and frames; throws file_error
  void read_into(unsigned char* to, std::size_t n) const;  // n bytes from fd_; throws file_error
  void need_whole() const;                                 // throws std::logic_error for a header_only one
  bool whole_ = true;
};

// The largest file read (a file of the shim's full layout with the largest event ring is ~700 MiB).
constexpr std::uint64_t k_max_file_bytes = std::uint64_t{1} << 30;

const char* kind_name(int kind);  // "device", "pinned", ...

// The effective user's stats files in a folder (newest first); *skipped gets one line per file
// left out: not a stats file, not a regular file, or another user's. Open the paths it returns
// with only_mine too.
std::vector<std::string> find_files(const std::string& dir, std::vector<std::string>* skipped);

}  // namespace poolshim::stats_tool
