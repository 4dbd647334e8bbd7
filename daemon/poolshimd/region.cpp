// The slab region (region.h).
#include "poolshimd/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace poolshim::daemon {
namespace {
void identify(int fd, ino_t* ino, dev_t* dev) {
  struct stat st {};
  if (fstat(fd, &st) != 0) st = {};
  *ino = st.st_ino;
  *dev = st.st_dev;
}
}  // namespace

slab_region::slab_region(region_options o) : options_(o) {
  if (o.slab_bytes == 0 || o.slab_bytes % (std::size_t{2} << 20) != 0)
    throw std::invalid_argument("slab size must be a positive multiple of 2 MiB");
  if (o.total_bytes < o.slab_bytes) throw std::invalid_argument("region smaller than one slab");
  slabs_.resize(o.total_bytes / o.slab_bytes);
  for (unsigned i = 0; i < std::max(o.fill_threads, 1u); ++i) fillers_.emplace_back([this] { filler_loop(); });
}

slab_region::~slab_region() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  for (auto& t : fillers_) t.join();
  for (slab& s : slabs_)
    if (s.fd >= 0) close(s.fd);
  for (int fd : closing_) close(fd);
}

int slab_region::make_filled_memfd(std::uint64_t* serial) const {
  if (getrandom(serial, sizeof *serial, 0) != static_cast<ssize_t>(sizeof *serial)) return -1;
  const std::string name = slab_name(options_.key, *serial);
  int fd = -1;
  if (options_.huge_pages) fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
  if (fd < 0) fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  const auto size = static_cast<off_t>(options_.slab_bytes);
  // fallocate allocates every page now (and fails cleanly when memory is short): the client maps
  // memory that exists, and its pre-touch only fills page tables.
  // Sealed: no client can shrink a slab (a mapping of the daemon's, or another process's, would
  // fault) or grow it (memory outside the region).
  if (ftruncate(fd, size) != 0 || fallocate(fd, 0, 0, size) != 0 || fcntl(fd, F_ADD_SEALS, k_seals) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void slab_region::filler_loop() {
  // Filling ahead is background work: at a lower priority (nice 10) than the event loop, so that on
  // a busy machine a client's reply does not wait behind a slab's fallocate. A lend that finds no
  // ready slab fills one itself, on the loop.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
  std::unique_lock lock(mutex_);
  for (;;) {
    // Spare slabs held long enough become empty (to be filled); the wait wakes to look at them.
    const auto expire_spares = [this] {
      const auto now = std::chrono::steady_clock::now();
      bool held = false;
      for (slab& s : slabs_) {
        if (s.st != state::spare) continue;
        if (now - s.spare_since >= k_spare_hold)
          s.st = state::empty;
        else
          held = true;
      }
      return held;
    };
    const bool held = expire_spares();
    const auto ready_to_work = [this] {
      if (stopping_ || !closing_.empty()) return true;
      for (const slab& s : slabs_)
        if (s.st == state::empty) return true;
      return false;
    };
    // With spares held: wake for work, else when a quarter of the hold has passed (to expire them).
    // Without: wake for work or for a new spare (release() notifies), which starts that clock.
    if (held)
      work_.wait_for(lock, k_spare_hold / 4, ready_to_work);
    else
      work_.wait(lock, [&] {
        return ready_to_work() ||
               std::any_of(slabs_.begin(), slabs_.end(), [](const slab& x) { return x.st == state::spare; });
      });
    if (stopping_) return;
    if (!ready_to_work()) continue;  // woken to expire spares
    if (!closing_.empty()) {
      const int fd = closing_.back();
      closing_.pop_back();
      lock.unlock();
      close(fd);
      lock.lock();
      continue;
    }
    std::size_t i = 0;
    while (slabs_[i].st != state::empty) ++i;
    slabs_[i].st = state::filling;
    lock.unlock();
    std::uint64_t serial = 0;
    const int fd = make_filled_memfd(&serial);
    lock.lock();
    if (fd < 0) {
      slabs_[i].st = state::empty;
      // Memory is short: try again later rather than spin.
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      lock.lock();
      continue;
    }
    if (slabs_[i].st == state::filling) {
      slabs_[i].fd = fd;
      slabs_[i].serial = serial;
      identify(fd, &slabs_[i].ino, &slabs_[i].dev);
      slabs_[i].st = state::ready;
    } else {
      close(fd);  // filled synchronously by a lend meanwhile
    }
  }
}

int slab_region::lend(std::uint64_t owner, int* fd_for_client) {
  std::unique_lock lock(mutex_);
  int pick = -1;
  for (std::size_t i = 0; i < slabs_.size() && pick < 0; ++i)
    if (slabs_[i].st == state::ready) pick = static_cast<int>(i);
  if (pick < 0) {
    // None filled yet: fill an empty one (or one a filler is on) here rather than refuse.
    for (std::size_t i = 0; i < slabs_.size() && pick < 0; ++i)
      if (slabs_[i].st == state::empty || slabs_[i].st == state::filling || slabs_[i].st == state::spare)
        pick = static_cast<int>(i);
    if (pick < 0) return -1;
    slab& s = slabs_[static_cast<std::size_t>(pick)];
    s.st = state::lent;  // claimed: a filler that finishes it closes its own memfd
    lock.unlock();
    std::uint64_t serial = 0;
    const int fd = make_filled_memfd(&serial);
    lock.lock();
    if (fd < 0) {
      s.st = state::empty;
      work_.notify_one();
      return -1;
    }
    s.fd = fd;
    s.serial = serial;
    identify(fd, &s.ino, &s.dev);
  }
  slab& s = slabs_[static_cast<std::size_t>(pick)];
  const int dup = fcntl(s.fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    if (s.st != state::ready) s.st = state::ready;
    return -1;
  }
  s.st = state::lent;
  s.owner = owner;
  *fd_for_client = dup;
  return pick;
}

slab_id slab_region::give_back(int i) {
  slab_id id;
  {
    std::lock_guard lock(mutex_);
    slab& s = slabs_.at(static_cast<std::size_t>(i));
    if (s.st != state::lent) return id;
    id = slab_id{s.dev, s.ino, s.serial};
    // Never lent again; the pages go with the last mapping. Closing the last reference frees the
    // pages there and then (milliseconds for 64 MiB), so a filler does it, not the event loop.
    closing_.push_back(s.fd);
    s.fd = -1;
    s.owner = 0;
    s.st = state::empty;
    s.serial = 0;
    ++reclaimed_;
  }
  work_.notify_one();
  return id;
}

int slab_region::adopt(std::uint64_t owner, int fd, std::size_t bytes, std::uint64_t serial) {
  struct stat st {};
  if (bytes != options_.slab_bytes || fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) != bytes) return -1;
  if ((fcntl(fd, F_GET_SEALS) & k_seals) != k_seals) return -1;
  std::lock_guard lock(mutex_);
  // Replace a slab that holds no client's memory: a spare or empty one first, else a ready one.
  int pick = -1;
  for (state want : {state::spare, state::empty, state::ready}) {
    for (std::size_t i = 0; i < slabs_.size() && pick < 0; ++i)
      if (slabs_[i].st == want) pick = static_cast<int>(i);
    if (pick >= 0) break;
  }
  if (pick < 0) return -1;
  slab& s = slabs_[static_cast<std::size_t>(pick)];
  if (s.fd >= 0) close(s.fd);
  const int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mine < 0) {
    s.fd = -1;
    s.st = state::empty;
    work_.notify_one();
    return -1;
  }
  s.fd = mine;
  s.ino = st.st_ino;
  s.dev = st.st_dev;
  s.serial = serial;
  s.st = state::lent;
  s.owner = owner;
  return pick;
}

int slab_region::find_lent(int fd) const {
  struct stat st {};
  if (fstat(fd, &st) != 0) return -1;
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < slabs_.size(); ++i)
    if (slabs_[i].st == state::lent && slabs_[i].ino == st.st_ino) return static_cast<int>(i);
  return -1;
}

bool slab_region::serial_lent(std::uint64_t serial) const {
  std::lock_guard lock(mutex_);
  for (const slab& s : slabs_)
    if (s.st == state::lent && s.serial == serial) return true;
  return false;
}

bool slab_region::reserve(std::size_t n) {
  std::lock_guard lock(mutex_);
  // A slab a filler is on counts as free: the filler closes what it made when it sees the slab
  // taken meanwhile (as when a lend fills one itself).
  const auto is_free = [](const slab& s) {
    return s.st == state::spare || s.st == state::empty || s.st == state::filling || s.st == state::ready;
  };
  std::size_t free = 0;
  for (const slab& s : slabs_) free += is_free(s);
  if (free < n) return false;
  // Spare and empty slabs first, then those being filled, ready ones last (they cost a fill to
  // replace).
  for (const state want : {state::spare, state::empty, state::filling, state::ready}) {
    for (slab& s : slabs_) {
      if (n == 0) break;
      if (s.st != want) continue;
      if (s.fd >= 0) closing_.push_back(s.fd);
      s = slab{};
      s.st = state::reserved;
      --n;
    }
  }
  work_.notify_one();
  return true;
}

void slab_region::release(std::size_t n) {
  {
    std::lock_guard lock(mutex_);
    for (slab& s : slabs_) {
      if (n == 0) break;
      if (s.st != state::reserved) continue;
      s.st = state::spare;  // filled again only if no reserve takes it back soon (k_spare_hold)
      s.spare_since = std::chrono::steady_clock::now();
      --n;
    }
  }
  work_.notify_all();
}

std::uint64_t slab_region::serial_of(int i) const {
  std::lock_guard lock(mutex_);
  return slabs_.at(static_cast<std::size_t>(i)).serial;
}

std::vector<int> slab_region::closing_fds() const {
  std::lock_guard lock(mutex_);
  return closing_;
}

void slab_region::set_owner(int i, std::uint64_t owner) {
  std::lock_guard lock(mutex_);
  slabs_.at(static_cast<std::size_t>(i)).owner = owner;
}

std::uint64_t slab_region::owner_of(int i) const {
  std::lock_guard lock(mutex_);
  const slab& s = slabs_.at(static_cast<std::size_t>(i));
  return s.st == state::lent ? s.owner : 0;
}

region_figures slab_region::figures() const {
  std::lock_guard lock(mutex_);
  region_figures f{};
  f.slabs = slabs_.size();
  f.region_bytes = slabs_.size() * options_.slab_bytes;
  for (const slab& s : slabs_) {
    if (s.st == state::lent) f.lent_bytes += options_.slab_bytes;
    if (s.st == state::reserved) f.named_bytes += options_.slab_bytes;
    if (s.st == state::ready) ++f.ready_slabs;
  }
  f.free_bytes = f.region_bytes - f.lent_bytes - f.named_bytes;
  f.reclaimed = reclaimed_;
  return f;
}

}  // namespace poolshim::daemon
