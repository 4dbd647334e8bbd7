// The Redis control plane's threads, its command parser and its mirror writes (redis_plane.h).
#include "poolshimd/redis_plane.h"

#include <hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "poolshimd/log.h"

namespace poolshim::daemon {
namespace {

// ---- a JSON reader for one flat command object: strings, integers, arrays of integers ----
struct json_reader {
  const std::string& s;
  std::size_t i = 0;
  std::string error;

  void space() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(char c) {
    space();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  bool fail(std::string why) {
    if (error.empty()) error = std::move(why) + " (at byte " + std::to_string(i) + ")";
    return false;
  }
  bool string(std::string* out) {
    if (!eat('"')) return fail("a string was expected");
    out->clear();
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (static_cast<unsigned char>(c) < 0x20) return fail("a control character in a string");
      if (c == '\\') {
        if (i >= s.size()) break;
        const char e = s[i++];
        switch (e) {
          case '"':
          case '\\':
          case '/':
            c = e;
            break;
          case 'n':
            c = '\n';
            break;
          case 't':
            c = '\t';
            break;
          case 'u': {  // ASCII only: names and dtypes are ASCII
            if (i + 4 > s.size() ||
                !std::all_of(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(i + 4),
                             [](char h) { return std::isxdigit(static_cast<unsigned char>(h)) != 0; }))
              return fail("a \\u escape is four hex digits");
            const unsigned long v = std::strtoul(s.substr(i, 4).c_str(), nullptr, 16);
            i += 4;
            if (v == 0 || v > 0x7f) return fail("a \\u escape outside ASCII");
            c = static_cast<char>(v);
            break;
          }
          default:
            return fail("an unknown escape");
        }
      }
      out->push_back(c);
      if (out->size() > 4096) return fail("a string longer than 4096 bytes");
    }
    if (i >= s.size()) return fail("an unterminated string");
    ++i;
    return true;
  }
  bool integer(long long* out) {
    space();
    const std::size_t start = i;
    if (i < s.size() && s[i] == '-') ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == start || (i == start + 1 && s[start] == '-')) return fail("a number was expected");
    if (i < s.size() && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')) return fail("an integer was expected");
    errno = 0;
    *out = std::strtoll(s.c_str() + start, nullptr, 10);
    if (errno == ERANGE) return fail("an integer out of range");
    return true;
  }
};

const char* numpy_to_wire(const std::string& d) {
  static const std::pair<const char*, const char*> names[] = {
      {"uint8", "u8"},    {"int8", "i8"},     {"uint16", "u16"}, {"int16", "i16"},   {"uint32", "u32"},
      {"int32", "i32"},   {"uint64", "u64"},  {"int64", "i64"},  {"float16", "f16"}, {"bfloat16", "bf16"},
      {"float32", "f32"}, {"float64", "f64"}, {"half", "f16"},   {"float", "f32"},   {"double", "f64"}};
  for (const auto& [numpy, wire] : names)
    if (d == numpy) return wire;
  return nullptr;
}

// ---- hiredis helpers ----
struct reply_ptr {
  redisReply* r;
  explicit reply_ptr(void* p) : r(static_cast<redisReply*>(p)) {}
  ~reply_ptr() {
    if (r != nullptr) freeReplyObject(r);
  }
  reply_ptr(const reply_ptr&) = delete;
  reply_ptr& operator=(const reply_ptr&) = delete;
  bool ok() const { return r != nullptr && r->type != REDIS_REPLY_ERROR; }
};

// A command's words as hiredis takes them (pointers and lengths: binary-safe).
struct argv_of {
  explicit argv_of(const std::vector<std::string>& args) {
    for (const std::string& a : args) {
      words.push_back(a.data());
      lens.push_back(a.size());
    }
  }
  int count() const { return static_cast<int>(words.size()); }
  std::vector<const char*> words;
  std::vector<std::size_t> lens;
};

bool command(redisContext* c, const std::vector<std::string>& args) {
  argv_of a(args);
  reply_ptr r(redisCommandArgv(c, a.count(), a.words.data(), a.lens.data()));
  return r.ok();
}

void append(redisContext* c, const std::vector<std::string>& args) {
  argv_of a(args);
  redisAppendCommandArgv(c, a.count(), a.words.data(), a.lens.data());
}

// MULTI, the commands, EXEC: true when EXEC ran them all.
bool transaction(redisContext* c, const std::vector<std::vector<std::string>>& commands) {
  append(c, {"MULTI"});
  for (const auto& cmd : commands) append(c, cmd);
  append(c, {"EXEC"});
  bool ok = true;
  for (std::size_t k = 0; k < commands.size() + 2; ++k) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK) return false;
    reply_ptr r(raw);
    if (k == commands.size() + 1)
      ok = r.ok() && r.r->type == REDIS_REPLY_ARRAY;
    else if (!r.ok())
      ok = false;
  }
  return ok;
}

std::vector<std::string> hset_args(const std::string& key, const redis_entry& e) {
  std::vector<std::string> a{"HSET", key};
  for (const auto& [f, v] : e.fields) {
    a.push_back(f);
    a.push_back(v);
  }
  return a;
}

}  // namespace

redis_command parse_redis_command(const std::string& json) {
  redis_command c;
  auto done = [&](std::string why) {
    c.error = std::move(why);
    return c;
  };
  if (json.size() > 65536) return done("a command longer than 64 KiB");
  // First the whole object, each value a string, an integer or an array of integers; then what the
  // keys mean (so that reply_to is known whatever else is wrong).
  struct value {
    enum { text, number, list } kind;
    std::string s;
    long long n = 0;
    std::vector<long long> items;
  };
  std::map<std::string, value> v;
  json_reader j{json};
  if (!j.eat('{')) return done("not a JSON object");
  if (!j.eat('}')) {
    do {
      std::string key;
      if (!j.string(&key)) return done(j.error);
      if (v.count(key) != 0) return done("the key '" + key + "' twice");
      if (!j.eat(':')) return done("':' was expected after '" + key + "'");
      value x{value::text, {}, 0, {}};
      j.space();
      if (j.i < json.size() && json[j.i] == '"') {
        if (!j.string(&x.s)) return done(key + ": " + j.error);
      } else if (j.eat('[')) {
        x.kind = value::list;
        if (!j.eat(']')) {
          do {
            long long d = 0;
            if (!j.integer(&d)) return done(key + ": " + j.error);
            x.items.push_back(d);
            if (x.items.size() > 64) return done(key + ": more than 64 items");
          } while (j.eat(','));
          if (!j.eat(']')) return done(key + ": ']' was expected");
        }
      } else {
        x.kind = value::number;
        if (!j.integer(&x.n)) return done(key + ": a string, an integer or an array of integers was expected");
      }
      v.emplace(std::move(key), std::move(x));
    } while (j.eat(','));
    if (!j.eat('}')) return done("'}' or ',' was expected");
  }
  if (auto it = v.find("reply_to"); it != v.end() && it->second.kind == value::text) c.reply_to = it->second.s;
  j.space();
  if (j.i != json.size()) return done("bytes after the object");
  for (const auto& [key, x] : v) {
    if (key == "op" || key == "name" || key == "dtype" || key == "reply_to") {
      if (x.kind != value::text) return done(key + ": a string was expected");
      if (key == "op") c.op = x.s;
      if (key == "name") c.name = x.s;
      if (key == "dtype") c.dtype = x.s;
    } else if (key == "shape") {
      if (x.kind != value::list) return done("shape: an array of integers was expected");
      if (x.items.size() > 8) return done("shape: more than 8 dimensions");
      for (const long long d : x.items) {
        if (d < 0) return done("shape: a negative dimension");
        c.shape.push_back(static_cast<std::uint64_t>(d));
      }
    } else if (key == "device") {
      if (x.kind == value::text) {
        const std::string& t = x.s;
        if (t == "cpu")
          c.device = -1;
        else if (t.rfind("cuda:", 0) == 0 && t.size() > 5 && t.size() < 9 &&
                 std::all_of(t.begin() + 5, t.end(),
                             [](char d) { return std::isdigit(static_cast<unsigned char>(d)); }))
          c.device = std::atoi(t.c_str() + 5);
        else
          return done("device: a number, \"cuda:N\" or \"cpu\", not '" + t + "'");
      } else if (x.kind == value::number && x.n >= -1 && x.n <= 1023) {
        c.device = static_cast<int>(x.n);
      } else {
        return done("device: a number from -1 to 1023, \"cuda:N\" or \"cpu\"");
      }
    } else if (key == "pid") {
      if (x.kind != value::number || x.n < 0 || x.n > 0x3fffffff) return done("pid: a process id was expected");
      c.pid = static_cast<long>(x.n);
    } else {
      return done("unknown key '" + key + "' (op, name, dtype, shape, device, pid, reply_to)");
    }
  }
  if (c.op != "create" && c.op != "get" && c.op != "delete")
    return done("op: \"create\", \"get\" or \"delete\", not '" + c.op + "'");
  if (c.name.empty()) return done("no name");
  if (c.op == "create") {
    if (const char* w = numpy_to_wire(c.dtype)) c.dtype = w;
    if (v.count("shape") == 0) return done("create: no shape");
    if (v.count("dtype") == 0) return done("create: no dtype");
  } else if (v.count("shape") || v.count("dtype") || v.count("device")) {
    return done(c.op + ": shape, dtype and device belong to create");
  }
  return c;
}

std::string base64(const void* data, std::size_t n) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  for (std::size_t i = 0; i < n; i += 3) {
    const unsigned v = (p[i] << 16) | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out.push_back(k[(v >> 18) & 63]);
    out.push_back(k[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? k[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? k[v & 63] : '=');
  }
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

bool parse_redis_url(const std::string& url, redis_url* out, std::string* why) {
  redis_url u;
  auto db_of = [&](const std::string& t) {
    if (t.empty()) return true;
    char* end = nullptr;
    const long v = std::strtol(t.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > 1000) return false;
    u.db = static_cast<int>(v);
    return true;
  };
  if (url.rfind("unix://", 0) == 0) {
    std::string rest = url.substr(7);
    const std::size_t q = rest.find("?db=");
    if (q != std::string::npos) {
      if (!db_of(rest.substr(q + 4))) return *why = "bad database number in " + url, false;
      rest.resize(q);
    }
    if (rest.empty() || rest[0] != '/') return *why = "unix:// needs an absolute socket path: " + url, false;
    u.unix_path = rest;
  } else if (url.rfind("redis://", 0) == 0) {
    std::string rest = url.substr(8);
    const std::size_t slash = rest.find('/');
    if (slash != std::string::npos) {
      if (!db_of(rest.substr(slash + 1))) return *why = "bad database number in " + url, false;
      rest.resize(slash);
    }
    if (rest.find('@') != std::string::npos) return *why = "credentials in the URL are not supported: " + url, false;
    const std::size_t colon = rest.rfind(':');
    if (colon != std::string::npos) {
      char* end = nullptr;
      const long p = std::strtol(rest.c_str() + colon + 1, &end, 10);
      if (*end != '\0' || p <= 0 || p > 65535) return *why = "bad port in " + url, false;
      u.port = static_cast<int>(p);
      rest.resize(colon);
    }
    if (!rest.empty()) u.host = rest;
  } else {
    *why = "a Redis URL is redis://host[:port][/db] or unix:///path[?db=N], not '" + url + "'";
    return false;
  }
  *out = u;
  return true;
}

// ---- the bridge ----

redis_bridge::redis_bridge(redis_url url, std::string prefix, int wake_fd)
    : url_(std::move(url)), prefix_(std::move(prefix)), wake_fd_(wake_fd) {
  intake_ = std::thread([this] { intake_loop(); });
  writer_ = std::thread([this] { writer_loop(); });
}

redis_bridge::~redis_bridge() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  intake_.join();  // within a BLPOP timeout (1 s)
  writer_.join();
}

void redis_bridge::wake() const {
  const std::uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

void* redis_bridge::connect(std::string* why) const {
  const timeval tv{2, 0};
  redisContext* c = url_.unix_path.empty() ? redisConnectWithTimeout(url_.host.c_str(), url_.port, tv)
                                           : redisConnectUnixWithTimeout(url_.unix_path.c_str(), tv);
  if (c == nullptr || c->err != 0) {
    *why = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    return nullptr;
  }
  const timeval io{3, 0};  // longer than a BLPOP's 1 s
  redisSetTimeout(c, io);
  if (url_.db != 0 && !command(c, {"SELECT", std::to_string(url_.db)})) {
    *why = "SELECT " + std::to_string(url_.db) + " failed";
    redisFree(c);
    return nullptr;
  }
  return c;
}

void redis_bridge::intake_loop() {
  const std::string key = prefix_ + "cmd";
  redisContext* c = nullptr;
  auto backoff = std::chrono::milliseconds(100);
  auto last_complaint = std::chrono::steady_clock::time_point{};
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
    }
    if (c == nullptr) {
      std::string why;
      c = static_cast<redisContext*>(connect(&why));
      if (c == nullptr) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, backoff, [this] { return stop_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        continue;
      }
    }
    reply_ptr r(redisCommand(c, "BLPOP %b 1", key.data(), key.size()));
    if (r.r == nullptr) {  // the connection failed: again, after a pause
      redisFree(c);
      c = nullptr;
      continue;
    }
    if (r.r->type == REDIS_REPLY_ERROR) {
      // Redis refuses (the key is not a list, authentication, a read-only replica...): said at
      // most every 30 s, and asked again after a pause, never in a loop.
      const auto now = std::chrono::steady_clock::now();
      if (now - last_complaint > std::chrono::seconds(30)) {
        log::warn("poolshimd: redis refuses BLPOP {}: {} (retrying)", key, std::string(r.r->str, r.r->len));
        last_complaint = now;
      }
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, backoff, [this] { return stop_; });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      continue;
    }
    backoff = std::chrono::milliseconds(100);
    if (r.r->type == REDIS_REPLY_ARRAY && r.r->elements == 2 && r.r->element[1]->type == REDIS_REPLY_STRING) {
      {
        std::lock_guard lock(mutex_);
        commands_.emplace_back(r.r->element[1]->str, r.r->element[1]->len);
      }
      wake();
    }
  }
  if (c != nullptr) redisFree(c);
}

void redis_bridge::writer_loop() {
  redisContext* c = nullptr;
  auto backoff = std::chrono::milliseconds(100);
  auto last_complaint = std::chrono::steady_clock::time_point{};
  for (;;) {
    if (c == nullptr) {
      std::string why;
      c = static_cast<redisContext*>(connect(&why));
      std::unique_lock lock(mutex_);
      if (stop_) break;
      if (c == nullptr) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_complaint > std::chrono::seconds(30)) {
          log::warn("poolshimd: redis at {}: {} (retrying)",
                    url_.unix_path.empty() ? url_.host + ":" + std::to_string(url_.port) : url_.unix_path, why);
          last_complaint = now;
        }
        cv_.wait_for(lock, backoff, [this] { return stop_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        continue;
      }
      backoff = std::chrono::milliseconds(100);
      connected_ = true;
      // What was queued for the old connection is superseded by a fresh snapshot (replies are kept).
      std::erase_if(writes_, [](const write_op& w) { return w.kind != write_op::reply; });
      want_snapshot_ = true;
      awaiting_snapshot_ = true;  // replies wait for it: a reply's hash is written before it
      lock.unlock();
      log::info("poolshimd: redis connected; rebuilding the mirror");
      wake();
    }
    std::unique_lock lock(mutex_);
    const auto next = [this] {
      return awaiting_snapshot_ ? std::find_if(writes_.begin(), writes_.end(),
                                               [](const write_op& w) { return w.kind == write_op::snapshot; })
                                : writes_.begin();
    };
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || next() != writes_.end(); });
    if (stop_) break;
    if (next() == writes_.end()) {
      lock.unlock();
      // Notice a Redis that went away while nothing was written (an error reply is an answer:
      // the connection is there).
      if (!command(c, {"PING"}) && c->err != 0) {
        redisFree(c);
        c = nullptr;
        std::lock_guard relock(mutex_);
        connected_ = false;
      }
      continue;
    }
    const write_op op = *next();  // stays queued until written (a reply survives a reconnect)
    lock.unlock();
    bool ok = true;
    switch (op.kind) {
      case write_op::put:
        ok = transaction(c, {{"DEL", prefix_ + op.entry.name}, hset_args(prefix_ + op.entry.name, op.entry)});
        break;
      case write_op::remove:
        ok = command(c, {"DEL", prefix_ + op.key});
        break;
      case write_op::reply:
        ok = command(c, {"RPUSH", op.key, op.value});
        break;
      case write_op::snapshot: {
        // Hashes under the prefix that the registry does not hold: a previous daemon's (or a
        // previous connection's), whose memory is gone.
        std::set<std::string> keep;
        for (const redis_entry& e : op.all) keep.insert(prefix_ + e.name);
        std::vector<std::string> stale;
        std::string cursor = "0";
        const std::string pattern = prefix_ + "*";
        do {
          reply_ptr r(redisCommand(c, "SCAN %s MATCH %b COUNT 1000", cursor.c_str(), pattern.data(), pattern.size()));
          if (!r.ok() || r.r->type != REDIS_REPLY_ARRAY || r.r->elements != 2) {
            ok = false;
            break;
          }
          cursor.assign(r.r->element[0]->str, r.r->element[0]->len);
          for (std::size_t k = 0; k < r.r->element[1]->elements; ++k) {
            const redisReply* e = r.r->element[1]->element[k];
            std::string key(e->str, e->len);
            if (keep.count(key) != 0) continue;
            reply_ptr t(redisCommand(c, "TYPE %b", key.data(), key.size()));
            if (t.ok() && t.r->type == REDIS_REPLY_STATUS && std::strcmp(t.r->str, "hash") == 0) stale.push_back(key);
          }
        } while (ok && cursor != "0");
        if (!ok) break;
        std::vector<std::vector<std::string>> cmds;
        for (const std::string& k : stale) cmds.push_back({"DEL", k});
        for (const redis_entry& e : op.all) {
          cmds.push_back({"DEL", prefix_ + e.name});
          cmds.push_back(hset_args(prefix_ + e.name, e));
        }
        ok = cmds.empty() || transaction(c, cmds);
        if (ok)
          log::info("poolshimd: redis mirror rebuilt: {} buffer{}, {} stale entr{} removed", op.all.size(),
                    op.all.size() == 1 ? "" : "s", stale.size(), stale.size() == 1 ? "y" : "ies");
        break;
      }
    }
    if (!ok && c->err != 0) {  // the connection failed: reconnect and rebuild (the op stays for a reply)
      log::warn("poolshimd: redis: {}; reconnecting", c->errstr);
      redisFree(c);
      c = nullptr;
      std::lock_guard relock(mutex_);
      connected_ = false;
      continue;
    }
    if (!ok) log::warn("poolshimd: redis refused a mirror update (kind {})", static_cast<int>(op.kind));
    std::lock_guard relock(mutex_);
    if (op.kind == write_op::snapshot) awaiting_snapshot_ = false;
    std::erase_if(writes_, [&](const write_op& w) { return w.id == op.id; });  // the loop may have dropped it
  }
  if (c != nullptr) redisFree(c);
}

void redis_bridge::enqueue(write_op op) {
  {
    std::lock_guard lock(mutex_);
    if (!connected_ && op.kind != write_op::reply) return;  // the snapshot after connecting has it
    op.id = ++next_id_;
    writes_.push_back(std::move(op));
  }
  cv_.notify_all();
}

std::vector<std::string> redis_bridge::take_commands() {
  std::lock_guard lock(mutex_);
  return std::exchange(commands_, {});
}

bool redis_bridge::snapshot_wanted() {
  std::lock_guard lock(mutex_);
  return std::exchange(want_snapshot_, false);
}

void redis_bridge::snapshot(std::vector<redis_entry> all) {
  write_op op{write_op::snapshot, {}, {}, {}, std::move(all)};
  {
    std::lock_guard lock(mutex_);
    op.id = ++next_id_;
    std::erase_if(writes_, [](const write_op& w) { return w.kind != write_op::reply; });
    writes_.push_back(std::move(op));
  }
  cv_.notify_all();
}

void redis_bridge::put(redis_entry e) { enqueue(write_op{write_op::put, std::move(e), {}, {}, {}}); }

void redis_bridge::remove(const std::string& name) { enqueue(write_op{write_op::remove, {}, name, {}, {}}); }

void redis_bridge::reply(const std::string& list, const std::string& json) {
  enqueue(write_op{write_op::reply, {}, list, json, {}});
}

bool redis_bridge::connected() const {
  std::lock_guard lock(mutex_);
  return connected_;
}

}  // namespace poolshim::daemon
