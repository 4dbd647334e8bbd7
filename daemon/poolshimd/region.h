// The daemon's pinned-host region: a fixed number of equal slabs, each its own memfd (a client
// receives only the slab it was lent), filled (pages allocated with fallocate, optionally huge
// pages) by background threads so that a lease is a descriptor pass, not page faults. A slab that
// comes back is never lent again: its memfd is closed (a forked child of the client may still map
// those pages; they stay valid for it and are freed with its mapping) and a fresh memfd takes its
// place, so memory one client — or one uid — held is never seen by another, and comes back zeroed
// by construction. Each memfd is named with its identity (slab_identity.h) and sealed against
// shrinking and growing once filled. The event loop calls everything but the filler, under the
// region's mutex.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "poolshimd/slab_identity.h"

namespace poolshim::daemon {

struct region_options {
  std::size_t total_bytes = std::size_t{4} << 30;
  std::size_t slab_bytes = std::size_t{64} << 20;
  bool huge_pages = false;    // MFD_HUGETLB, falling back to normal pages when it fails
  unsigned fill_threads = 2;  // background fillers
  identity_key key{};         // names every slab's memfd (slab_identity.h)
};

// What identifies a slab's memory wherever a descriptor or a mapping of it is: its file (device
// and inode), and the serial in its name.
struct slab_id {
  dev_t dev = 0;
  ino_t ino = 0;
  std::uint64_t serial = 0;
};

struct region_figures {
  std::uint64_t region_bytes, lent_bytes, free_bytes, ready_slabs, slabs, reclaimed;
  std::uint64_t named_bytes;  // slabs taken out for named buffers (reserve)
};

class slab_region {
 public:
  // How long a slab given back by named buffers stays spare before it is filled again (region.h).
  static constexpr std::chrono::milliseconds k_spare_hold{1000};
  explicit slab_region(region_options o);
  ~slab_region();  // stops the fillers, closes every memfd
  slab_region(const slab_region&) = delete;
  slab_region& operator=(const slab_region&) = delete;

  std::size_t slab_bytes() const noexcept { return options_.slab_bytes; }
  const identity_key& key() const noexcept { return options_.key; }

  // A free slab for `owner` (ready ones first; an unfilled one is filled here): its index and a
  // duplicate of its memfd for the reply (the caller closes it), or -1 when none is free.
  int lend(std::uint64_t owner, int* fd_for_client);
  // The slab goes back: a fresh memfd replaces it (filled in the background). Its identity, for
  // whoever still holds it (server.h: a returned slab counts until its process lets it go).
  slab_id give_back(int slab);
  // A client re-declares a slab an earlier daemon lent it: `fd` (named with `serial`, sealed) is
  // adopted as a slab of this region if one is free to be replaced (its memory is the client's
  // already). -1 if not.
  int adopt(std::uint64_t owner, int fd, std::size_t bytes, std::uint64_t serial);
  // Free slabs taken out of the region for a named buffer, which has a memfd of its own (the
  // server makes it): n slabs that are empty or ready (a ready one's memfd goes to a filler to
  // close) are not lent until release(n). False, and nothing taken, when fewer are free.
  bool reserve(std::size_t n);
  void release(std::size_t n);
  // A slab lent now carries this serial.
  bool serial_lent(std::uint64_t serial) const;
  std::uint64_t serial_of(int slab) const;
  // The daemon's own descriptors of returned slabs not yet closed (a filler closes them): not
  // references of a client (server.h's look at /proc for returned slabs still held).
  std::vector<int> closing_fds() const;
  // The seals every slab has once filled, and that an adopted one must have.
  static constexpr int k_seals = 0x0002 | 0x0004 | 0x0001;  // F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL
  std::uint64_t owner_of(int slab) const;
  // The lent slab `fd` refers to (the same memfd), or -1: a client that reconnects to the same
  // daemon re-declares slabs the daemon knows already.
  int find_lent(int fd) const;
  void set_owner(int slab, std::uint64_t owner);
  region_figures figures() const;

 private:
  // spare: given back by named buffers (release), free and empty, but not filled again for
  // k_spare_hold: the next reserve takes it first. Without it, a named buffer created and freed in
  // a loop made every round free one filled slab and fill another (4 KiB buffers: create and last
  // close p99 2 to 5 ms on 2 cores, 0.1 ms with it).
  enum class state : std::uint8_t { empty, filling, ready, lent, reserved, spare };
  struct slab {
    int fd = -1;
    ino_t ino = 0;  // the memfd's inode: what identifies it in a descriptor a client sends back
    dev_t dev = 0;
    std::uint64_t serial = 0;  // in its name (slab_identity.h)
    state st = state::empty;
    std::uint64_t owner = 0;
    std::chrono::steady_clock::time_point spare_since{};  // spare: when it was given back
  };
  int make_filled_memfd(std::uint64_t* serial) const;  // -1 on failure
  void filler_loop();

  const region_options options_;
  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::vector<slab> slabs_;
  std::vector<int> closing_;  // memfds of returned slabs, closed by a filler
  std::uint64_t reclaimed_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> fillers_;
};

}  // namespace poolshim::daemon
