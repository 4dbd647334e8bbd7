// Reading and symbolising a stats file (stats_file.h).
#include "stats/stats_file.h"

#include <cxxabi.h>
#include <dirent.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

namespace poolshim::stats_tool {
namespace {

constexpr const char* k_kind_names[] = {"device", "pinned", "managed", "async", "vmm"};

std::string demangle(const char* name) {
  if (name == nullptr) return {};
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d != nullptr ? d : name;
  std::free(d);
  return out;
}

// Whether PATH is a regular file, asked without blocking: libdw opens a module's path with a
// plain open(), which a FIFO named by a damaged or hostile file would block forever.
bool regular_file(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  close(fd);
  return regular;
}

// An inlined subroutine's name: its linkage name demangled (as the symbol table's names are), else
// its plain name, both looked up through DW_AT_abstract_origin.
std::string die_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) != nullptr ||
      dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr) != nullptr)
    if (const char* name = dwarf_formstring(&attr)) return demangle(name);
  if (dwarf_attr_integrate(die, DW_AT_name, &attr) != nullptr)
    if (const char* name = dwarf_formstring(&attr)) return name;
  return {};
}

// Whether the file libdw opened for module M has the build-id the shim recorded for it (a
// module recorded without one, or a file without one, is taken as it is: nothing to compare).
bool same_build_id(Dwfl_Module* mod, const poolshim_stats_module& m) {
  const std::size_t recorded = std::min<std::size_t>(m.build_id_size, sizeof m.build_id);
  if (recorded == 0) return true;
  const unsigned char* bits = nullptr;
  GElf_Addr vaddr = 0;
  const int n = dwfl_module_build_id(mod, &bits, &vaddr);
  if (n <= 0 || bits == nullptr) return true;
  return static_cast<std::size_t>(n) == recorded && std::memcmp(bits, m.build_id, recorded) == 0;
}

// Once per path and run of the tool (top symbolises again for new stacks).
void warn_changed(const std::string& path) {
  static std::set<std::string> warned;
  if (!warned.insert(path).second) return;
  std::fprintf(stderr,
               "poolshim-stats: %s is not the file the process ran (its build-id differs: rebuilt or replaced "
               "since): its frames are shown as module+offset\n",
               path.c_str());
}

// libdw, offline: each module reported at its load bias, so runtime addresses look up directly.
class symboliser {
 public:
  explicit symboliser(const poolshim_stats_module* modules, std::uint32_t count) {
    static const Dwfl_Callbacks callbacks = {dwfl_build_id_find_elf, dwfl_standard_find_debuginfo,
                                             dwfl_offline_section_address, nullptr};
    dwfl_ = dwfl_begin(&callbacks);
    if (dwfl_ == nullptr) return;
    // The file at a module's path may not be the one the process ran (rebuilt, upgraded): its
    // symbols would name other functions, silently. A module whose file has another build-id than
    // the one the shim recorded is not asked (its frames stay module+offset).
    dwfl_report_begin(dwfl_);
    for (std::uint32_t i = 0; i < count; ++i) {
      const poolshim_stats_module& m = modules[i];
      const std::string path = field_text(m.path);  // bounded: the file may lack the NUL
      const std::uint64_t bias = m.load_bias;
      if (path.empty() || path.rfind("linux-vdso", 0) == 0 || !regular_file(path)) continue;
      Dwfl_Module* mod = dwfl_report_elf(dwfl_, path.c_str(), path.c_str(), -1, bias, false);
      if (mod != nullptr && !same_build_id(mod, m)) {
        warn_changed(path);
        changed_.push_back(mod);
      }
    }
    dwfl_report_end(dwfl_, nullptr, nullptr);
  }
  ~symboliser() {
    if (dwfl_ != nullptr) dwfl_end(dwfl_);
  }
  // Fills f (function, file, line) for its pc. When the pc lies in code the compiler inlined,
  // f names the innermost inlined function at the line the line table gives, and *callers gets
  // the functions it was inlined into, innermost first, each at the line of its call
  // (DW_AT_call_file/line), ending with the real function the symbol table names.
  void resolve(frame* f, std::vector<frame>* callers) const {
    if (dwfl_ == nullptr) return;
    // A return address: the call is the instruction before it.
    const Dwarf_Addr pc = f->pc - 1;
    Dwfl_Module* mod = dwfl_addrmodule(dwfl_, pc);
    if (mod == nullptr || std::find(changed_.begin(), changed_.end(), mod) != changed_.end()) return;
    if (const char* symbol = dwfl_module_addrname(mod, pc)) {
      // A versioned symbol (__libc_start_main@@GLIBC_2.34): the version is no part of the name.
      const std::string name(symbol, std::strcspn(symbol, "@"));
      f->function = demangle(name.c_str());
    }
    if (Dwfl_Line* line = dwfl_module_getsrc(mod, pc)) {
      int lineno = 0;
      const char* src = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
      if (src != nullptr) f->file = src;
      f->line = lineno;
    }
    Dwarf_Addr bias = 0;
    Dwarf_Die* cu = dwfl_module_addrdie(mod, pc, &bias);
    if (cu == nullptr) return;
    Dwarf_Die* found = nullptr;
    const int nfound = dwarf_getscopes(cu, pc - bias, &found);
    if (nfound <= 0) return;
    // dwarf_getscopes goes on past the innermost inlined subroutine with the scopes of that
    // function's abstract definition, not with the code it was inlined into: a walk of its answer
    // stops at the first subprogram and loses every level between (inner inlined into middle
    // inlined into outer read "inner, outer at middle's line"). The chain of DIEs that really
    // encloses the innermost scope, up to the real function, is its parents (dwarf_getscopes_die),
    // as eu-addr2line -i walks it.
    Dwarf_Die innermost = found[0];
    std::free(found);
    Dwarf_Die* scopes = nullptr;
    const int n = dwarf_getscopes_die(&innermost, &scopes);
    if (n <= 0) return;
    Dwarf_Files* files = nullptr;
    std::size_t nfiles = 0;
    if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = nullptr;
    // scopes[0] is the innermost; each inlined subroutine up to the enclosing subprogram is a frame.
    const std::string real_function = f->function;
    frame* current = f;
    for (int i = 0; i < n; ++i) {
      Dwarf_Die* die = &scopes[i];
      const int tag = dwarf_tag(die);
      if (tag == DW_TAG_subprogram) break;
      if (tag != DW_TAG_inlined_subroutine) continue;
      current->function = die_name(die);
      if (current->function.empty()) current->function = "?";
      // The caller: the next enclosing inlined subroutine or the real function, at the call.
      frame caller = *current;
      caller.function = real_function;
      caller.file.clear();
      caller.line = 0;
      Dwarf_Attribute attr;
      Dwarf_Word value = 0;
      if (dwarf_attr(die, DW_AT_call_file, &attr) != nullptr && dwarf_formudata(&attr, &value) == 0 &&
          files != nullptr && value < nfiles)
        if (const char* file = dwarf_filesrc(files, value, nullptr, nullptr)) caller.file = file;
      if (dwarf_attr(die, DW_AT_call_line, &attr) != nullptr && dwarf_formudata(&attr, &value) == 0)
        caller.line = static_cast<int>(value);
      callers->push_back(std::move(caller));
      current = &callers->back();
    }
    std::free(scopes);
  }

 private:
  Dwfl* dwfl_ = nullptr;
  std::vector<Dwfl_Module*> changed_;  // reported, but not the file the process ran
};

// Whether pid is a zombie (exited or killed, its parent has not reaped it yet) or being torn down:
// the state letter after the command name in /proc/PID/stat (the name may hold ')' itself, so the
// last one ends it). Unknown (no /proc): not a zombie.
bool zombie(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  if (close_paren == nullptr || close_paren[1] != ' ') return false;
  const char state = close_paren[2];
  return state == 'Z' || state == 'X' || state == 'x';
}

template <class T>
const T* at(const void* base, std::uint64_t offset) {
  return reinterpret_cast<const T*>(static_cast<const unsigned char*>(base) + offset);
}

}  // namespace

stats_file::stats_file(const std::string& path, bool only_mine, part what) : path_(path), whole_(what == part::whole) {
  const auto not_mine = [&](uid_t uid) {
    return not_mine_error(path + ": another user's file (uid " + std::to_string(uid) +
                          "): not read (name its path to read it)");
  };
  // Asked first so that another user's file is named as such, not as one we may not open (the
  // answer that counts is fstat's below, of the file actually opened).
  struct stat before {};
  if (only_mine && lstat(path.c_str(), &before) == 0 && before.st_uid != geteuid()) throw not_mine(before.st_uid);
  // Never blocks (a FIFO or a device in the folder) and never follows a symbolic link.
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) throw file_error(path + ": a symbolic link (not followed; name the file itself)");
    throw file_error(path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    throw file_error(path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    const char* what = "not a regular file";
    if (S_ISFIFO(st.st_mode)) what = "a FIFO";
    if (S_ISDIR(st.st_mode)) what = "a directory";
    if (S_ISSOCK(st.st_mode)) what = "a socket";
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) what = "a device";
    throw file_error(path + ": " + what + ", not a poolshim stats file (not read)");
  }
  if (only_mine && st.st_uid != geteuid()) {
    close(fd);
    throw not_mine(st.st_uid);
  }
  owner_ = st.st_uid;
  disk_bytes_ = static_cast<std::uint64_t>(st.st_blocks) * 512u;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  if (st.st_size < static_cast<off_t>(sizeof(poolshim_stats_header))) {
    close(fd);
    throw file_error(path + ": truncated (" + std::to_string(st.st_size) + " bytes; not a poolshim stats file)");
  }
  if (static_cast<std::uint64_t>(st.st_size) > k_max_file_bytes) {
    close(fd);
    throw file_error(path + ": too large (" + std::to_string(st.st_size) +
                     " bytes; a poolshim stats file has at most " + std::to_string(k_max_file_bytes) + "): not read");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  fd_ = fd;
  try {
    // A copy, not a mapping: its owner may truncate the file meanwhile (a mapping would raise
    // SIGBUS then); the size is the one checked above, whatever the file does later.
    const std::size_t n = whole_ ? size_ : sizeof(poolshim_stats_header);  // the size checked above
    data_ = make_buffer(n);
    map_ = data_.get();
    read_into(static_cast<unsigned char*>(static_cast<void*>(data_.get())), n);
    header_ = static_cast<const poolshim_stats_header*>(map_);
    // The checks and every later index use this copy: a writer changing the header meanwhile (the
    // process itself, or whoever owns the file) cannot move a checked region.
    std::memcpy(&layout_, map_, sizeof layout_);
    check_layout();
    if (whole_) check_stacks(static_cast<const unsigned char*>(map_));
  } catch (...) {  // no destructor runs for a constructor that throws
    python_.reset();
    close(fd_);
    fd_ = -1;
    throw;
  }
}

void stats_file::read_into(unsigned char* to, std::size_t bytes) const {
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = pread(fd_, to + done, bytes - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw file_error(path_ + ": " + std::strerror(errno));
    if (n == 0)
      throw file_error(path_ + ": truncated while read (it had " + std::to_string(size_) + " bytes, only " +
                       std::to_string(done) + " could be read)");
    done += static_cast<std::size_t>(n);
  }
}

stats_file::buffer stats_file::make_buffer(std::size_t bytes) {
  constexpr std::size_t k_huge = std::size_t{2} << 20;
  const std::size_t want = (bytes + 7) / 8 * 8;
  if (want < k_huge) return buffer(new std::uint64_t[want / 8], file_buffer_free{0});  // a header, a small file
  // Mapped with a huge page's room to spare, then trimmed to start on a huge-page boundary.
  const std::size_t mapped = (want + k_huge - 1) / k_huge * k_huge + k_huge;
  void* m = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  const auto at = reinterpret_cast<std::uintptr_t>(m);
  const std::uintptr_t aligned = (at + k_huge - 1) / k_huge * k_huge;
  if (aligned > at) munmap(m, aligned - at);
  const std::size_t keep = mapped - (aligned - at);
  const std::size_t used = (want + k_huge - 1) / k_huge * k_huge;
  if (keep > used) munmap(reinterpret_cast<void*>(aligned + used), keep - used);
  (void)madvise(reinterpret_cast<void*>(aligned), used, MADV_HUGEPAGE);  // advice: 4 KiB pages still work
  return buffer(reinterpret_cast<std::uint64_t*>(aligned), file_buffer_free{used});
}

void file_buffer_free::operator()(std::uint64_t* p) const noexcept {
  if (p == nullptr) return;
  if (bytes == 0)
    delete[] p;
  else
    munmap(p, bytes);
}

void stats_file::need_whole() const {
  if (!whole_) throw std::logic_error(path_ + ": opened for its header only");
}

void stats_file::refresh() {
  need_whole();
  struct stat st {};
  if (fstat(fd_, &st) != 0) throw file_error(path_ + ": " + std::strerror(errno));
  if (static_cast<std::uint64_t>(st.st_size) != size_)
    throw file_error(path_ + ": " + (static_cast<std::uint64_t>(st.st_size) < size_ ? "truncated" : "grown") +
                     " while read (" + std::to_string(size_) + " bytes, now " + std::to_string(st.st_size) + ")");
  buffer fresh = make_buffer(size_);
  auto* bytes = static_cast<unsigned char*>(static_cast<void*>(fresh.get()));
  read_into(bytes, size_);
  check_stacks(bytes);  // the layout is the one checked at open (layout_): only the slots change
  std::unique_ptr<python_symbols> python;
  if (layout_.python_size != 0)
    python =
        std::make_unique<python_symbols>(bytes + layout_.python_offset, static_cast<std::size_t>(layout_.python_size));
  data_ = std::move(fresh);
  map_ = data_.get();
  header_ = static_cast<const poolshim_stats_header*>(map_);
  python_ = std::move(python);
}

// Every stack in use: at most POOLSHIM_STATS_MAX_DEPTH frames (and the file's own depth_cap),
// inside the arena, and all of them together no more frames than the arena holds (each stack has
// its own frames there): what the report makes of the stacks is then bounded by the file's size.
// Checked before anything is allocated for them.
void stats_file::check_stacks(const unsigned char* data) const {
  const poolshim_stats_header& h = layout_;
  const auto* slots = reinterpret_cast<const poolshim_stats_slot*>(data + h.slots_offset);
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < h.slot_count; ++i) {
    const poolshim_stats_slot slot = slots[i];
    if (slot.key == 0 || (slot.key & (std::uint64_t{1} << 63)) != 0 || slot.depth == 0xffffffffu) continue;
    if (slot.depth > h.depth_cap)
      throw file_error(path_ + ": corrupt (field slots[" + std::to_string(i) +
                       "].depth: " + std::to_string(slot.depth) + " frames, more than depth_cap " +
                       std::to_string(h.depth_cap) + ")");
    if (std::uint64_t{slot.frames_at} + slot.depth > h.arena_frames)
      throw file_error(path_ + ": corrupt (field slots[" + std::to_string(i) + "].frames_at: frames " +
                       std::to_string(slot.frames_at) + "+" + std::to_string(slot.depth) + " outside the arena of " +
                       std::to_string(h.arena_frames) + ")");
    total += slot.depth;
    if (total > h.arena_frames)
      throw file_error(path_ + ": corrupt (field slots[].depth: the stacks hold more frames than the arena's " +
                       std::to_string(h.arena_frames) + ")");
  }
}

void stats_file::check_layout() {
  const std::string& path = path_;
  const poolshim_stats_header& h = layout_;
  if (std::memcmp(h.magic, POOLSHIM_STATS_MAGIC, sizeof POOLSHIM_STATS_MAGIC) != 0)
    throw file_error(path + ": not a poolshim stats file (bad magic)");
  if (h.version > POOLSHIM_STATS_VERSION)
    throw file_error(path + ": written by a newer poolshim (stats file version " + std::to_string(h.version) +
                     ", this poolshim-stats reads up to " + std::to_string(POOLSHIM_STATS_VERSION) + ")");
  if (h.version < POOLSHIM_STATS_VERSION)
    throw file_error(path + ": written by an older poolshim (stats file version " + std::to_string(h.version) +
                     "; this poolshim-stats reads version " + std::to_string(POOLSHIM_STATS_VERSION) + ")");
  if (h.header_size != sizeof(poolshim_stats_header)) throw file_error(path + ": unknown header layout");
  // Every region must lie inside the file, after the header, 8-byte aligned, with a sane count;
  // written so that nothing can wrap (an offset near 2^64 must not pass).
  auto inside = [&](std::uint64_t off, std::uint64_t n, std::uint64_t each) {
    return off >= sizeof h && off <= size_ && off % 8 == 0 && n <= (std::uint64_t{1} << 32) && n * each <= size_ - off;
  };
  if (h.file_size != size_)
    throw file_error(path + ": truncated (header says " + std::to_string(h.file_size) + " bytes, file has " +
                     std::to_string(size_) + ")");
  if (!inside(h.modules_offset, h.module_capacity, sizeof(poolshim_stats_module)) ||
      h.module_count > h.module_capacity || !inside(h.slots_offset, h.slot_count, sizeof(poolshim_stats_slot)) ||
      (h.slot_count & (h.slot_count - 1)) != 0 || !inside(h.arena_offset, h.arena_frames, sizeof(std::uint64_t)) ||
      !inside(h.sites_offset, std::uint64_t{h.slot_count} + 1, sizeof(poolshim_stats_site)) ||
      !inside(h.kinds_offset, POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS, sizeof(poolshim_stats_kind)) ||
      !inside(h.live_offset, h.live_capacity, sizeof(poolshim_stats_live)) ||
      (h.shard_count != 0 && (h.shard_size != sizeof(poolshim_stats_shard) ||
                              !inside(h.shards_offset, h.shard_count, sizeof(poolshim_stats_shard)))) ||
      (h.event_capacity & (h.event_capacity - 1)) != 0 ||
      (h.event_capacity != 0 && !inside(h.events_offset, h.event_capacity, sizeof(poolshim_stats_event))) ||
      (h.python_size != 0 && !inside(h.python_offset, h.python_size, 1)) ||
      (h.timeline_capacity != 0 &&
       !inside(h.timeline_offset, 1,
               sizeof(poolshim_stats_timeline) + std::uint64_t{h.timeline_capacity} * sizeof(poolshim_stats_sample))))
    throw file_error(path + ": corrupt (a region lies outside the file or is not 8-byte aligned)");
  if (h.depth_cap > POOLSHIM_STATS_MAX_DEPTH)
    throw file_error(path + ": corrupt (field depth_cap: " + std::to_string(h.depth_cap) + " frames, more than " +
                     std::to_string(POOLSHIM_STATS_MAX_DEPTH) + ")");
  if (h.python_size != 0)
    python_ = std::make_unique<python_symbols>(static_cast<const unsigned char*>(map_) + h.python_offset,
                                               static_cast<std::size_t>(h.python_size));
}

stats_file::~stats_file() {
  python_.reset();
  if (fd_ >= 0) close(fd_);
}

bool stats_file::running() const {
  // kill(0 or a negative pid) would ask about a process group or every process, not one process.
  const pid_t pid = header_->pid;
  if (header_->end_ns != 0 || pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) return false;
  // A process killed but not yet reaped by its parent (a zombie) still answers kill(pid, 0): it
  // runs no more and its file will not change again.
  return !zombie(pid);
}

// The threads' shards in use (their counters add to the shared ones).
std::vector<const poolshim_stats_shard*> stats_file::shards() const {
  need_whole();
  std::vector<const poolshim_stats_shard*> out;
  if (layout_.shard_count == 0) return out;
  const auto* sh = at<poolshim_stats_shard>(map_, layout_.shards_offset);
  for (std::uint32_t i = 0; i < layout_.shard_count; ++i)
    if (sh[i].in_use != 0) out.push_back(&sh[i]);
  return out;
}

std::uint64_t stats_file::events() const {
  need_whole();
  std::uint64_t n = header_->events;
  for (const poolshim_stats_shard* s : shards()) n += s->events;
  return n;
}

std::vector<site> stats_file::sites(bool symbolise, bool every_stack) const {
  need_whole();
  const poolshim_stats_header& h = layout_;  // offsets and counts: the checked copy
  const std::uint64_t peak_epoch = header_->peak_epoch;
  const std::vector<const poolshim_stats_shard*> shards_in_use = shards();
  const auto* slots = at<poolshim_stats_slot>(map_, h.slots_offset);
  const auto* arena = at<std::uint64_t>(map_, h.arena_offset);
  const auto* counters = at<poolshim_stats_site>(map_, h.sites_offset);
  const auto* modules = at<poolshim_stats_module>(map_, h.modules_offset);
  const std::uint32_t nmod = std::min(__atomic_load_n(&header_->module_count, __ATOMIC_ACQUIRE), h.module_capacity);
  std::unique_ptr<symboliser> sym;
  if (symbolise) sym = std::make_unique<symboliser>(modules, nmod);
  std::vector<site> out;
  for (std::uint32_t id = 0; id <= h.slot_count; ++id) {
    poolshim_stats_site c = counters[id];
    for (const poolshim_stats_shard* sh : shards_in_use)
      if (const poolshim_stats_shard_site* e = poolshim_stats_shard_entry(sh, id))
        poolshim_stats_fold_site(&c, e, 0);  // stats_file.h: the one list of what a shard holds
    if (c.allocs == 0 && c.frees == 0 && (!every_stack || id == 0 || slots[id - 1].key == 0)) continue;
    c.live_count = static_cast<std::int64_t>(c.allocs) - static_cast<std::int64_t>(c.frees);
    site s;
    s.id = id;
    s.counters = c;
    s.at_process_peak = c.seen_epoch == peak_epoch ? c.at_peak : c.live_bytes;
    if (id != 0) {
      const poolshim_stats_slot slot = slots[id - 1];  // a copy: checked, then used, as it was
      const std::uint32_t depth = slot.depth == 0xffffffffu ? 0 : slot.depth;
      if ((slot.key & (std::uint64_t{1} << 63)) == 0 && slot.key != 0 && depth <= POOLSHIM_STATS_MAX_DEPTH &&
          std::uint64_t{slot.frames_at} + depth <= h.arena_frames) {
        for (std::uint32_t i = 0; i < depth; ++i) {
          frame f;
          f.pc = arena[slot.frames_at + i];
          if ((f.pc >> 48) == POOLSHIM_STATS_CUT_TAG) {  // not a frame: the stack was cut here
            s.cut = true;
            s.whole_depth = static_cast<std::uint32_t>(f.pc);
            s.whole_depth_more = (f.pc & POOLSHIM_STATS_CUT_MORE) != 0;
            continue;
          }
          for (std::uint32_t m = 0; m < nmod; ++m)
            if (f.pc >= modules[m].start && f.pc < modules[m].end) {
              f.module = field_text(modules[m].path);
              f.offset = f.pc - modules[m].load_bias;
            }
          if (symbolise && python_ && python_->resolve(&f)) {
          } else if ((f.pc >> 48) == POOLSHIM_STATS_PYFRAME_TAG) {
            f.module = "[python]";  // a Python frame the table cannot name (not recorded, or no table)
          } else if (sym) {
            std::vector<frame> callers;  // the functions f's code was inlined into
            sym->resolve(&f, &callers);
            s.frames.push_back(std::move(f));
            for (frame& c : callers) s.frames.push_back(std::move(c));
            continue;
          }
          s.frames.push_back(std::move(f));
        }
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<kind_figures> stats_file::kinds() const {
  need_whole();
  const auto* k = at<poolshim_stats_kind>(map_, layout_.kinds_offset);
  const std::vector<const poolshim_stats_shard*> shards_in_use = shards();
  std::vector<kind_figures> out;
  for (int d = 0; d < POOLSHIM_STATS_DEVICES; ++d)
    for (int i = 0; i < POOLSHIM_STATS_KINDS; ++i) {
      poolshim_stats_kind c = k[d * POOLSHIM_STATS_KINDS + i];
      for (const poolshim_stats_shard* sh : shards_in_use)
        poolshim_stats_fold_kind(&c, &sh->kinds[d * POOLSHIM_STATS_KINDS + i], 0);
      if (c.allocs != 0 || c.frees != 0) out.push_back(kind_figures{d, i, c});
    }
  return out;
}

std::vector<poolshim_stats_event> stats_file::event_ring() const {
  need_whole();
  std::vector<poolshim_stats_event> out;
  const std::uint32_t cap = layout_.event_capacity;
  if (cap == 0) return out;
  const auto* ev = at<poolshim_stats_event>(map_, layout_.events_offset);
  const std::uint64_t next = __atomic_load_n(&header_->event_next, __ATOMIC_ACQUIRE);
  for (std::uint64_t i = next > cap ? next - cap : 0; i < next; ++i) {
    const poolshim_stats_event& e = ev[i % cap];
    if (__atomic_load_n(&e.seq, __ATOMIC_ACQUIRE) != i + 1) continue;  // overwritten or being written
    poolshim_stats_event copy = e;
#if !defined(__SANITIZE_THREAD__)             // TSan cannot model fences (and this reader has one thread)
    __atomic_thread_fence(__ATOMIC_ACQUIRE);  // the copy's loads before the second look at seq
#endif
    if (__atomic_load_n(&e.seq, __ATOMIC_RELAXED) == i + 1) out.push_back(copy);  // not rewritten meanwhile
  }
  return out;
}

stats_tool::timeline stats_file::timeline() const {
  need_whole();
  stats_tool::timeline out;
  const std::uint32_t cap = layout_.timeline_capacity;
  if (cap == 0) return out;
  const auto* t = at<poolshim_stats_timeline>(map_, layout_.timeline_offset);
  const auto* samples = reinterpret_cast<const poolshim_stats_sample*>(t + 1);
  out.interval_ns = t->interval_ns;
  int columns = 0;
  while (columns < POOLSHIM_STATS_TIMELINE_COLUMNS && t->columns[columns] != 0 &&
         t->columns[columns] <= POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS) {
    const int p = t->columns[columns] - 1;
    out.columns.push_back({p / POOLSHIM_STATS_KINDS, p % POOLSHIM_STATS_KINDS});
    ++columns;
  }
  const std::uint32_t n = std::min(t->count, cap);
  for (std::uint32_t i = 0; i < n; ++i) {
    const poolshim_stats_sample& s = samples[i];
    // A sample being written or moved while the file was copied (a running process) is left out:
    // times only rise.
    if (s.ns == 0 || (!out.samples.empty() && s.ns < out.samples.back().ns)) continue;
    stats_tool::timeline::sample x;
    x.ns = s.ns;
    x.total = s.total;
    x.live.assign(s.live, s.live + columns);
    for (int c = 0; c < POOLSHIM_STATS_TIMELINE_SITES; ++c)
      if (s.site[c] != 0 && s.site[c] <= layout_.slot_count) x.sites.push_back({s.site[c], s.site_live[c]});
    out.samples.push_back(std::move(x));
  }
  return out;
}

std::array<size_counts, POOLSHIM_STATS_KINDS> stats_file::kind_sizes() const {
  need_whole();
  std::array<size_counts, POOLSHIM_STATS_KINDS> out{};
  std::uint64_t sizes[POOLSHIM_STATS_KINDS][POOLSHIM_STATS_SIZE_BUCKETS];
  std::memcpy(sizes, header_->kind_sizes, sizeof sizes);
  for (const poolshim_stats_shard* sh : shards()) poolshim_stats_fold_kind_sizes(sizes, sh->kind_sizes, 0);
  for (int k = 0; k < POOLSHIM_STATS_KINDS; ++k)
    for (int b = 0; b < POOLSHIM_STATS_SIZE_BUCKETS; ++b)
      out[static_cast<std::size_t>(k)][static_cast<std::size_t>(b)] = sizes[k][b];
  return out;
}

std::vector<poolshim_stats_live> stats_file::live() const {
  need_whole();
  const auto* l = at<poolshim_stats_live>(map_, layout_.live_offset);
  std::vector<poolshim_stats_live> out;
  for (std::uint32_t i = 0; i < layout_.live_capacity; ++i)
    if (l[i].ptr > POOLSHIM_STATS_LIVE_CLAIMED) out.push_back(l[i]);
  return out;
}

std::vector<std::string> find_files(const std::string& dir, std::vector<std::string>* skipped) {
  std::vector<std::pair<std::uint64_t, std::string>> found;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) throw file_error(dir + ": " + std::strerror(errno));
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("poolshim-", 0) != 0 || name.size() < 7 || name.substr(name.size() - 6) != ".stats") continue;
    const std::string path = dir + "/" + name;
    try {
      const stats_file f(path, true, stats_file::part::header_only);
      found.emplace_back(f.header().start_ns, path);
    } catch (const file_error& err) {
      if (skipped != nullptr) skipped->push_back(err.what());
    }
  }
  closedir(d);
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& [t, p] : found) out.push_back(p);
  return out;
}

const char* kind_name(int k) { return k >= 0 && k < POOLSHIM_STATS_KINDS ? k_kind_names[k] : "?"; }

}  // namespace poolshim::stats_tool
