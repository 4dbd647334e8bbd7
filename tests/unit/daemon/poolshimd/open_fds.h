// The descriptors this process has open, less those whose target starts with `ignored` (by
// default every memfd: the region's background fillers open and close slabs meanwhile).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace poolshim::daemon {

inline int open_fd_count(const char* ignored = "/memfd:") {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (fcntl(fd, F_GETFD) == -1) continue;
    char link[256] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t len = readlink(path.c_str(), link, sizeof link - 1);
    n += !(len > 0 && std::strncmp(link, ignored, std::strlen(ignored)) == 0);
  }
  return n;
}

}  // namespace poolshim::daemon
