// poolshim IPC handles (ipc_router.h). The tables are small and used off the hit path: a mutex
// each; the free path looks at them only when something was exported.
#include "route/ipc_router.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "base/log.h"
#include "base/real_driver.h"
#include "route/device_router.h"
#include "source/daemon_client.h"

namespace poolshim::ipc_router {
namespace {

// The first bytes of a poolshim handle; the token follows. Not a layout the driver produces.
constexpr unsigned char k_magic[8] = {'P', 'S', 'H', 'M', 'I', 'P', 'C', 1};

struct exported {
  CUdeviceptr block;
  unsigned char token[16];
};
struct imported {
  CUdeviceptr ptr;   // what the importer got (segment base + offset)
  CUdeviceptr base;  // what the driver mapped (closed with cuIpcCloseMemHandle)
};

struct tables {
  std::mutex mutex;
  std::vector<exported> exports;
  std::vector<imported> imports;
};

// Blocks exported now. Outside the tables so that every cuMemFree (forget_export) reads one
// constant-initialised atomic and never builds the tables: no allocation, no static guard.
constinit std::atomic<std::size_t> g_export_count{0};
tables& the_tables() noexcept {
  static auto* t = new tables();  // leaky: frees from static destructors still look here
  return *t;
}

void make_handle(CUipcMemHandle* h, const unsigned char (&token)[16]) noexcept {
  std::memset(h, 0, sizeof *h);
  std::memcpy(h->reserved, k_magic, sizeof k_magic);
  std::memcpy(h->reserved + sizeof k_magic, token, sizeof token);
}

}  // namespace

bool try_export(CUipcMemHandle* handle, CUdeviceptr dptr, CUresult* result) noexcept {
  CUdeviceptr base = 0;
  std::size_t bytes = 0;
  if (handle == nullptr || !device_router::small_block(dptr, &base, &bytes)) return false;
  tables& t = the_tables();
  {
    std::lock_guard lock(t.mutex);
    for (const exported& e : t.exports)
      if (e.block == dptr) {  // exported before: the same handle
        make_handle(handle, e.token);
        *result = CUDA_SUCCESS;
        return true;
      }
  }
  CUipcMemHandle real{};
  const CUresult r = real_driver::get().cuIpcGetMemHandle(&real, base);
  if (r != CUDA_SUCCESS) {
    *result = r;
    return true;
  }
  unsigned char raw[64];
  static_assert(sizeof raw == sizeof real.reserved);
  std::memcpy(raw, real.reserved, sizeof raw);
  exported e{dptr, {}};
  if (!daemon_client::ipc_register(raw, dptr - base, bytes, e.token)) return false;
  {
    std::lock_guard lock(t.mutex);
    try {
      t.exports.push_back(e);
    } catch (...) {
      daemon_client::ipc_unregister(e.token);
      *result = CUDA_ERROR_OUT_OF_MEMORY;
      return true;
    }
    g_export_count.store(t.exports.size(), std::memory_order_release);
  }
  make_handle(handle, e.token);
  *result = CUDA_SUCCESS;
  return true;
}

bool try_open(CUdeviceptr* dptr, const CUipcMemHandle& handle, unsigned flags, CUresult* result) noexcept {
  if (std::memcmp(handle.reserved, k_magic, sizeof k_magic) != 0) return false;
  if (dptr == nullptr) {
    *result = CUDA_ERROR_INVALID_VALUE;
    return true;
  }
  unsigned char token[16];
  std::memcpy(token, handle.reserved + sizeof k_magic, sizeof token);
  unsigned char raw[64];
  std::uint64_t offset = 0, bytes = 0;
  if (!daemon_client::ipc_resolve(token, raw, &offset, &bytes)) {
    // Unknown, freed, another uid's, or no daemon: the driver's answer to a handle it does not know.
    *result = CUDA_ERROR_INVALID_VALUE;
    return true;
  }
  CUipcMemHandle real{};
  std::memcpy(real.reserved, raw, sizeof raw);
  CUdeviceptr base = 0;
  const CUresult r = real_driver::get().cuIpcOpenMemHandle_v2(&base, real, flags);
  if (r != CUDA_SUCCESS) {
    *result = r;
    return true;
  }
  tables& t = the_tables();
  std::lock_guard lock(t.mutex);
  try {
    t.imports.push_back(imported{base + offset, base});
  } catch (...) {
    (void)real_driver::get().cuIpcCloseMemHandle(base);
    *result = CUDA_ERROR_OUT_OF_MEMORY;
    return true;
  }
  *dptr = base + offset;
  *result = CUDA_SUCCESS;
  return true;
}

bool try_close(CUdeviceptr dptr, CUresult* result) noexcept {
  tables& t = the_tables();
  CUdeviceptr base = 0;
  {
    std::lock_guard lock(t.mutex);
    auto it = std::find_if(t.imports.begin(), t.imports.end(), [&](const imported& i) { return i.ptr == dptr; });
    if (it == t.imports.end()) return false;
    base = it->base;
    t.imports.erase(it);
  }
  *result = real_driver::get().cuIpcCloseMemHandle(base);
  return true;
}

void forget_export(CUdeviceptr block) noexcept {
  if (g_export_count.load(std::memory_order_acquire) == 0) return;
  tables& t = the_tables();
  exported gone{};
  {
    std::lock_guard lock(t.mutex);
    auto it = std::find_if(t.exports.begin(), t.exports.end(), [&](const exported& e) { return e.block == block; });
    if (it == t.exports.end()) return;
    gone = *it;
    t.exports.erase(it);
    g_export_count.store(t.exports.size(), std::memory_order_release);
  }
  daemon_client::ipc_unregister(gone.token);  // a later importer gets a clean error, not new bytes
}

}  // namespace poolshim::ipc_router
