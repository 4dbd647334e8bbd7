// Slab identities (slab_identity.h).
#include "poolshimd/slab_identity.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace poolshim::daemon {
namespace {

constexpr std::uint64_t rotl(std::uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

struct sip_state {
  std::uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  }
  void absorb(std::uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

bool random_key(identity_key* k) {
  std::uint64_t w[2];
  if (getrandom(w, sizeof w, 0) != static_cast<ssize_t>(sizeof w)) return false;
  k->k0 = w[0];
  k->k1 = w[1];
  return true;
}

constexpr const char* k_prefix = "poolshim-slab.";

}  // namespace

std::uint64_t siphash24(const identity_key& key, std::uint64_t word) noexcept {
  sip_state s{key.k0 ^ 0x736f6d6570736575ull, key.k1 ^ 0x646f72616e646f6dull, key.k0 ^ 0x6c7967656e657261ull,
              key.k1 ^ 0x7465646279746573ull};
  s.absorb(word);                    // the 8 bytes of the message
  s.absorb(std::uint64_t{8} << 56);  // the last block: no bytes left, the length in the top byte
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

std::string slab_name(const identity_key& key, std::uint64_t serial) {
  char name[64];
  std::snprintf(name, sizeof name, "%s%016" PRIx64 ".%016" PRIx64, k_prefix, serial, siphash24(key, serial));
  return name;
}

bool slab_serial(const identity_key& key, int fd, std::uint64_t* serial) {
  char link[128] = {};
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  if (n <= 0) return false;
  // "/memfd:NAME (deleted)", NAME exactly the one this key makes for the serial it names
  std::uint64_t s = 0;
  const std::string scan = std::string("/memfd:") + k_prefix + "%16" SCNx64;
  if (std::sscanf(link, scan.c_str(), &s) != 1) return false;
  if (std::string(link, static_cast<std::size_t>(n)) != "/memfd:" + slab_name(key, s) + " (deleted)") return false;
  *serial = s;
  return true;
}

namespace {
constexpr const char* k_owner_attr = "user.poolshim.owner";
std::string owner_text(const identity_key& key, std::uint64_t serial, uid_t uid) {
  char t[24];
  std::snprintf(t, sizeof t, "%016" PRIx64, siphash24(key, siphash24(key, serial) ^ (std::uint64_t{uid} << 1 | 1)));
  return t;
}
}  // namespace

bool tag_owner(const identity_key& key, int fd, std::uint64_t serial, uid_t uid) {
  const std::string t = owner_text(key, serial, uid);
  return fsetxattr(fd, k_owner_attr, t.data(), t.size(), 0) == 0;
}

owner_tag check_owner(const identity_key& key, int fd, std::uint64_t serial, uid_t uid) {
  char got[32] = {};
  const ssize_t n = fgetxattr(fd, k_owner_attr, got, sizeof got - 1);
  if (n < 0) return owner_tag::none;
  return std::string(got, static_cast<std::size_t>(n)) == owner_text(key, serial, uid) ? owner_tag::match
                                                                                       : owner_tag::other;
}

bool owner_tags_supported() {
  static const bool supported = [] {
    const int fd = memfd_create("poolshim-xattr-probe", MFD_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = fsetxattr(fd, k_owner_attr, "x", 1, 0) == 0;
    close(fd);
    return ok;
  }();
  return supported;
}

identity_key load_identity_key(const std::string& path, std::string* why) {
  identity_key k;
  const auto fresh = [&](const std::string& reason) {
    if (why) *why = reason;
    if (!random_key(&k)) k = identity_key{0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(getpid()), 0};
    return k;
  };
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) {
    identity_key made;
    if (!random_key(&made)) return fresh("getrandom failed");
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fresh(path + ": " + std::strerror(errno));
    const std::uint64_t w[2] = {made.k0, made.k1};
    const bool ok = write(fd, w, sizeof w) == static_cast<ssize_t>(sizeof w);
    close(fd);
    if (!ok) {
      unlink(path.c_str());
      return fresh(path + ": could not be written");
    }
    return made;
  }
  if (fd < 0) return fresh(path + ": " + std::strerror(errno));
  struct stat st {};
  std::uint64_t w[2] = {};
  const bool trusted = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
                       (st.st_mode & 077) == 0 && st.st_size == static_cast<off_t>(sizeof w) &&
                       pread(fd, w, sizeof w, 0) == static_cast<ssize_t>(sizeof w);
  close(fd);
  if (!trusted) return fresh(path + ": not a 16-byte key file of this user with mode 0600");
  k.k0 = w[0];
  k.k1 = w[1];
  return k;
}

}  // namespace poolshim::daemon
