// A slab's identity, stable across daemon restarts (issue #13, finding 3): every memfd the region
// makes is named "poolshim-slab.SERIAL.MAC" — SERIAL 64 random bits, MAC its SipHash-2-4 under a
// key that only the daemon can read and that outlives it (identity_key: a 0600 file beside the
// socket, in a directory no one else can write). A client can read and copy the name of a slab it
// holds, but cannot make a name for a serial it was never lent; the daemon also refuses a serial
// it has lent (find_lent) or taken back (its retired list). A memfd's name cannot change. The uid
// a slab is lent to is bound to it at the lease: a MAC of (serial, uid) in the memfd's extended
// attribute user.poolshim.owner (tmpfs keeps user xattrs since Linux 6.6; before, slabs are not
// bound to a uid), so that a slab handed to another uid cannot be re-declared by it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace poolshim::daemon {

struct identity_key {
  std::uint64_t k0 = 0, k1 = 0;
};

// SipHash-2-4 of one 64-bit word (little-endian bytes) under key.
std::uint64_t siphash24(const identity_key& key, std::uint64_t word) noexcept;

// The memfd name of the slab with this serial.
std::string slab_name(const identity_key& key, std::uint64_t serial);

// The serial of a descriptor's memfd when its name is one this key made; false otherwise.
bool slab_serial(const identity_key& key, int fd, std::uint64_t* serial);

// Binds the slab (this fd, this serial) to `uid`; false when the file system keeps no user xattr.
bool tag_owner(const identity_key& key, int fd, std::uint64_t serial, uid_t uid);
enum class owner_tag { match, other, none };
// What the slab's tag says of `uid`: its own, another uid's (or forged), or no tag at all.
owner_tag check_owner(const identity_key& key, int fd, std::uint64_t serial, uid_t uid);
// Whether memfds here keep user xattrs (checked once, on a memfd of its own).
bool owner_tags_supported();

// The key kept at `path` (created 0600 with a fresh random key when missing; a file that is not a
// regular file of ours with mode 0600 and 16 bytes is not trusted). On any failure: a fresh random
// key for this run only, and *why says why (a predecessor's slabs cannot be re-declared then).
identity_key load_identity_key(const std::string& path, std::string* why);

}  // namespace poolshim::daemon
