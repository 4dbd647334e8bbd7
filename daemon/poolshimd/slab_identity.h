// A slab's identity, stable across daemon restarts (issue #13, finding 3): every memfd the region
// makes is named "poolshim-slab.SERIAL.MAC" — SERIAL 64 random bits, MAC its SipHash-2-4 under a
// key that only the daemon can read and that outlives it (identity_key: a 0600 file beside the
// socket, in a directory no one else can write). A client can read and copy the name of a slab it
// holds, but cannot make a name for a serial it was never lent; the daemon also refuses a serial
// it has lent (find_lent) or taken back (its retired list). A memfd's name cannot change.
#pragma once

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

// The key kept at `path` (created 0600 with a fresh random key when missing; a file that is not a
// regular file of ours with mode 0600 and 16 bytes is not trusted). On any failure: a fresh random
// key for this run only, and *why says why (a predecessor's slabs cannot be re-declared then).
identity_key load_identity_key(const std::string& path, std::string* why);

}  // namespace poolshim::daemon
