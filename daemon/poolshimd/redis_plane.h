// The Redis control plane (issue #14), optional (`poolshimd --redis URL`): a mirror and an intake of
// the named-buffer registry. The daemon stays the authority.
//
// - Mirror: every named buffer of the shared namespace is a Redis hash PREFIX<name> (prefix
//   "tensor:" by default) with exactly the fields name, dtype, shape (JSON), device (the daemon's
//   index; "cpu" for a host buffer), bytes, ipc_handle (the legacy CUDA IPC handle in base64; empty
//   for a host buffer), owner_pid, refcount, ctime, mtime (seconds since the epoch). Each update is
//   one MULTI/EXEC; a buffer's hash goes the moment the buffer or its name does.
// - Intake: JSON commands popped (BLPOP) from the list PREFIX"cmd":
//     {"op": "create", "name": "X", "dtype": "f32", "shape": [2, 3], "device": 0, "pid": 1234,
//      "reply_to": "some:list"}
//     {"op": "get", "name": "X", "pid": 1234, "reply_to": ...}
//     {"op": "delete", "name": "X", "pid": 1234, "reply_to": ...}
//   create allocates a device buffer on the daemon's device N and holds one reference for the
//   command's pid (optional: without one, only a delete drops it); get adds a reference; delete drops
//   one (the pid's, if it names one) and frees the buffer when none is left. A pid's references go
//   the moment it exits (pidfd), and a buffer whose creating pid exits loses its name at once. The
//   result is RPUSHed to reply_to as JSON: {"ok": true, ...the hash's fields...} or {"ok": false,
//   "error": "..."}.
// - Survival: on connecting (the daemon's start, or after Redis went away) the mirror is rebuilt:
//   hashes under the prefix that the registry does not hold (a previous daemon's: their memory died
//   with it) are deleted and every buffer is written again.
//
// Two threads with a connection each (one blocks in BLPOP, one writes); the event loop talks to
// them through queues and an eventfd. hiredis is the client.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace poolshim::daemon {

// A command from the list, parsed and checked. error: not empty when it is unusable (the text is
// the reply's; reply_to may still be set).
struct redis_command {
  std::string op;  // "create", "get", "delete"
  std::string name, dtype, reply_to;
  std::vector<std::uint64_t> shape;
  int device = -1;  // create: the daemon's device index
  long pid = 0;     // 0: none named
  std::string error;
};
redis_command parse_redis_command(const std::string& json);

std::string base64(const void* data, std::size_t n);
std::string json_string(const std::string& s);  // quoted and escaped

// One buffer as the mirror writes it (field values as Redis stores them).
struct redis_entry {
  std::string name;
  std::vector<std::pair<std::string, std::string>> fields;  // in the documented order
  bool operator==(const redis_entry& o) const { return name == o.name && fields == o.fields; }
};

struct redis_url {
  std::string host = "127.0.0.1", unix_path;
  int port = 6379, db = 0;
};
// redis://[host][:port][/db] or unix:///path[?db=N]; false with *why on a bad URL.
bool parse_redis_url(const std::string& url, redis_url* out, std::string* why);

class redis_bridge {
 public:
  // wake_fd: an eventfd the loop polls; written when commands arrive or a snapshot is wanted.
  redis_bridge(redis_url url, std::string prefix, int wake_fd);
  ~redis_bridge();
  redis_bridge(const redis_bridge&) = delete;
  redis_bridge& operator=(const redis_bridge&) = delete;

  // The loop's side.
  std::vector<std::string> take_commands();  // popped since the last call (raw JSON)
  bool snapshot_wanted();                    // the writer (re)connected: send snapshot() now
  void snapshot(std::vector<redis_entry> all);
  void put(redis_entry e);
  void remove(const std::string& name);
  void reply(const std::string& list, const std::string& json);
  bool connected() const;  // the writer's connection is up (for --status and tests)

 private:
  struct write_op {
    enum { put, remove, reply, snapshot } kind;
    redis_entry entry;             // put
    std::string key, value;        // remove: key; reply: list and JSON
    std::vector<redis_entry> all;  // snapshot
    std::uint64_t id = 0;
  };
  void intake_loop();
  void writer_loop();
  void wake() const;
  void enqueue(write_op op);
  void* connect(std::string* why) const;  // a redisContext*, or null

  const redis_url url_;
  const std::string prefix_;
  const int wake_fd_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool want_snapshot_ = false;
  bool awaiting_snapshot_ = false;  // (re)connected: nothing but the snapshot is written until it is
  bool connected_ = false;
  std::uint64_t next_id_ = 0;
  std::vector<std::string> commands_;
  std::deque<write_op> writes_;
  std::thread intake_, writer_;
};

}  // namespace poolshim::daemon
