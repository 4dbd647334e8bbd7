// poolshim-stats clean (clean.h).
#include "stats/clean.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

#include "stats/stats_file.h"
#include "stats/tool_util.h"

namespace poolshim::stats_tool {
namespace {

// "30m", "12h", "7d": a count (at most 9 digits) and a unit (s, m, h, d, w), as seconds.
bool parse_duration(const std::string& text, std::uint64_t* seconds) {
  if (text.size() < 2) return false;
  std::uint64_t n = 0;
  if (!cli::parse_count(text.substr(0, text.size() - 1), &n) || text.size() - 1 > 9) return false;
  std::uint64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    case 'w':
      unit = 7 * 86400;
      break;
    default:
      return false;
  }
  *seconds = n * unit;  // < 10^9 weeks: no overflow
  return true;
}

std::string age_text(std::uint64_t ns) {
  const double s = static_cast<double>(ns) / 1e9;
  char b[48];
  if (s < 120)
    std::snprintf(b, sizeof b, "%.0f s", s);
  else if (s < 2 * 3600)
    std::snprintf(b, sizeof b, "%.0f min", s / 60);
  else if (s < 2 * 86400)
    std::snprintf(b, sizeof b, "%.1f h", s / 3600);
  else
    std::snprintf(b, sizeof b, "%.1f days", s / 86400);
  return b;
}

std::uint64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(t.tv_nsec);
}

// Whether a process of this pid exists (ours or anyone's): only ESRCH says it does not.
bool pid_alive(std::int32_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH); }

}  // namespace

int clean_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage) {
  std::string dir = default_dir, older_text;
  std::uint64_t older_s = 0;
  bool older = false, dry_run = false;
  auto bad = [](const std::string& what) {
    std::fprintf(stderr, "poolshim-stats clean: %s (see --help)\n", what.c_str());
    return 2;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (a == "--dry-run") {
      dry_run = true;
    } else if (a == "--dir" || a == "--older-than") {
      if (i + 1 >= args.size()) return bad(a + " needs a value");
      const std::string& v = args[++i];
      if (a == "--dir") {
        dir = v;
      } else if (!parse_duration(v, &older_s)) {
        return bad("bad --older-than '" + v + "' (a number and a unit: s, m, h, d or w, e.g. 30m, 12h, 7d)");
      } else {
        older = true;
        older_text = v;
      }
    } else {
      return bad((!a.empty() && a[0] == '-' ? "unknown option '" : "clean takes no process: '") + a + "'");
    }
  }

  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    std::fprintf(stderr, "poolshim-stats clean: %s: %s\n", dir.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<std::string> names;
  {
    const int list_fd = dup(dfd);
    DIR* d = list_fd < 0 ? nullptr : fdopendir(list_fd);
    if (d == nullptr) {
      std::fprintf(stderr, "poolshim-stats clean: %s: %s\n", dir.c_str(), std::strerror(errno));
      if (list_fd >= 0) close(list_fd);
      close(dfd);
      return 1;
    }
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("poolshim-", 0) == 0 && name.size() > 15 && name.substr(name.size() - 6) == ".stats")
        names.push_back(name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());

  const uid_t me = geteuid();
  const std::uint64_t now = now_ns();
  const std::uint64_t older_ns =
      older_s > UINT64_MAX / 1000000000ull ? UINT64_MAX : older_s * 1000000000ull;  // saturated
  std::size_t removed = 0, kept = 0, left = 0;
  std::uint64_t freed = 0;
  int status = 0;
  const char* const removing = dry_run ? "would remove" : "removed";
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    struct stat st {};
    if (fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) {  // gone meanwhile: nothing to say
        std::printf("  left alone    %s: %s\n", cli::terminal_text(path).c_str(), std::strerror(errno));
        ++left;
      }
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      std::printf("  left alone    %s: not a regular file\n", cli::terminal_text(path).c_str());
      ++left;
      continue;
    }
    if (st.st_uid != me) {
      std::printf("  left alone    %s: another user's file (uid %u)\n", cli::terminal_text(path).c_str(),
                  static_cast<unsigned>(st.st_uid));
      ++left;
      continue;
    }
    std::unique_ptr<stats_file> f;
    try {
      f = std::make_unique<stats_file>(path, true);
    } catch (const file_error& e) {
      // Not readable as a stats file: perhaps one a process is creating right now. Never removed.
      std::printf("  left alone    %s\n", cli::terminal_text(e.what()).c_str());
      ++left;
      continue;
    }
    if (f->device() != st.st_dev || f->inode() != st.st_ino) {  // replaced between the two looks
      std::printf("  left alone    %s: changed while being read\n", cli::terminal_text(path).c_str());
      ++left;
      continue;
    }
    const poolshim_stats_header& h = f->header();
    const std::int32_t pid = h.pid;
    const std::uint64_t end_ns = h.end_ns, start_ns = h.start_ns;
    if (pid_alive(pid)) {
      std::printf(
          "  kept          pid %d (%s): %s\n", pid,
          end_ns != 0 ? "recorded its exit, but the pid is alive: still ending, or the pid was reused" : "running",
          cli::terminal_text(path).c_str());
      ++kept;
      continue;
    }
    const std::uint64_t ended = end_ns != 0 ? end_ns : start_ns;  // a killed process: by its start
    const std::uint64_t age = now > ended ? now - ended : 0;
    const std::string how =
        end_ns != 0 ? "exited " + cli::when_text(end_ns) : "killed, started " + cli::when_text(start_ns);
    if (older && age < older_ns) {
      std::printf("  kept          pid %d (%s, %s ago: not older than %s): %s\n", pid, how.c_str(),
                  age_text(age).c_str(), older_text.c_str(), cli::terminal_text(path).c_str());
      ++kept;
      continue;
    }
    const std::uint64_t bytes = f->bytes_on_disk();
    f.reset();  // unmapped before it goes
    if (!dry_run) {
      // The very file checked above, still: unlink by name only if the name still leads to it.
      struct stat again {};
      if (fstatat(dfd, name.c_str(), &again, AT_SYMLINK_NOFOLLOW) != 0 || again.st_dev != st.st_dev ||
          again.st_ino != st.st_ino) {
        std::printf("  left alone    %s: changed while being read\n", cli::terminal_text(path).c_str());
        ++left;
        continue;
      }
      if (unlinkat(dfd, name.c_str(), 0) != 0) {
        std::fprintf(stderr, "poolshim-stats clean: removing %s: %s\n", cli::terminal_text(path).c_str(),
                     std::strerror(errno));
        status = 1;
        ++left;
        continue;
      }
    }
    std::printf("  %-13s pid %d (%s), %s: %s\n", removing, pid, how.c_str(),
                cli::bytes_text(static_cast<long double>(bytes)).c_str(), cli::terminal_text(path).c_str());
    ++removed;
    freed += bytes;
  }
  close(dfd);
  if (names.empty()) std::printf("  no stats files in %s\n", dir.c_str());
  std::printf("clean: %s %zu file%s, %s %s; kept %zu (running%s); left alone %zu (not yours, or not a stats file)\n",
              removing, removed, removed == 1 ? "" : "s", cli::bytes_text(static_cast<long double>(freed)).c_str(),
              dry_run ? "to free" : "freed", kept, older ? " or too recent" : "", left);
  return status;
}

}  // namespace poolshim::stats_tool
