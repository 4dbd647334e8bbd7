// The caching frameworks poolshim-stats recognises in call stacks (labels.h).
//
// A frame belongs to a framework's cache when its (demangled) function name contains one of the
// framework's function patterns, or — only when the function is unknown, as in the stripped
// libraries that Python wheels ship — when its module's file name matches one of the module
// patterns. A module pattern alone is not used for a named function: jaxlib's and CuPy's modules
// also hold their non-caching allocators, which a name tells apart. Not matched on purpose:
// cupy_backends (the CUDA runtime wrapper every CuPy allocation passes through, pooled or not) and
// RMM's Python modules (they hold every memory resource).
#include "stats/labels.h"

#include <cstring>

#include "stats/report_text.h"

namespace poolshim::stats_tool {
namespace {

enum fw_index : std::size_t { k_pytorch, k_cupy, k_xla, k_rmm };

const std::vector<framework> k_frameworks = {
    {"PyTorch CUDACachingAllocator", "PyTorch's CUDA caching allocator",
     "For per-tensor call sites run with PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync (each tensor is "
     "then its own cudaMallocAsync), or with PYTORCH_NO_CUDA_MEMORY_CACHING=1 (no cache at all; slow, for "
     "debugging)."},
    {"CuPy memory pool", "CuPy's memory pool",
     "For per-array call sites call cupy.cuda.set_allocator(None) (and "
     "cupy.cuda.set_pinned_memory_allocator(None) for pinned memory) before allocating."},
    {"XLA BFCAllocator", "XLA's BFC allocator (JAX; TensorFlow's is the same)",
     "For per-buffer call sites run JAX with XLA_PYTHON_CLIENT_ALLOCATOR=platform "
     "(XLA_PYTHON_CLIENT_PREALLOCATE=false alone only stops the up-front reservation), and TensorFlow "
     "with TF_GPU_ALLOCATOR=cuda_malloc_async."},
    {"RMM pool_memory_resource", "RMM's pool memory resource",
     "For per-allocation call sites use rmm::mr::cuda_memory_resource or cuda_async_memory_resource "
     "instead of the pool (Python: rmm.reinitialize(pool_allocator=False))."},
};

enum class field {
  function,     // the function name contains the needle (and `also`, when given)
  module_name,  // the module's file name starts with the needle; the function is unknown
  module_path,  // the module's path contains the needle; the function is unknown
};

struct pattern {
  fw_index fw;
  field where;
  const char* needle;
  const char* also = nullptr;
};

const pattern k_patterns[] = {
    // PyTorch: c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator::malloc and friends
    // (older releases: ...::CUDACachingAllocator::DeviceCachingAllocator), in libc10_cuda.so.
    {k_pytorch, field::function, "c10::cuda::CUDACachingAllocator::"},
    {k_pytorch, field::module_name, "libc10_cuda.so"},
    // CuPy: the Cython pool classes (SingleDeviceMemoryPool, PinnedMemoryPool), compiled into
    // cupy/cuda/memory.*.so and cupy/cuda/pinned_memory.*.so.
    {k_cupy, field::function, "MemoryPool", "cupy"},
    {k_cupy, field::module_path, "/cupy/cuda/memory."},
    {k_cupy, field::module_path, "/cupy/cuda/pinned_memory."},
    // XLA (JAX) and TensorFlow: tsl::BFCAllocator (formerly tensorflow::BFCAllocator), in jaxlib's
    // xla_extension.so or the CUDA PJRT plugin, libxla*, TensorFlow's framework library.
    {k_xla, field::function, "BFCAllocator::"},
    {k_xla, field::module_name, "xla_extension"},
    {k_xla, field::module_name, "libxla"},
    {k_xla, field::module_name, "xla_cuda_plugin"},
    {k_xla, field::module_name, "libtensorflow_framework"},
    {k_xla, field::module_name, "_pywrap_tensorflow"},
    // RMM: rmm::mr::pool_memory_resource<Upstream>::... (header-only C++, no module of its own).
    {k_rmm, field::function, "rmm::mr::pool_memory_resource<"},
};

// A framework's non-caching path in the same code: a stack with such a frame is not its cache, or
// (innermost) only when it is the innermost of the framework's frames, the one that called CUDA.
struct exclusion {
  fw_index fw;
  const char* function;
  bool innermost = false;
};
const exclusion k_exclusions[] = {
    {k_pytorch, "CUDACachingAllocator::CudaMallocAsync::"},  // backend:cudaMallocAsync
    // PYTORCH_NO_CUDA_MEMORY_CACHING=1: NativeCachingAllocator::allocate calls cudaMalloc itself;
    // the cached path passes through it on the way to DeviceCachingAllocator.
    {k_pytorch, "NativeCachingAllocator::allocate", true},
};

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

bool matches(const pattern& p, const frame& f) {
  switch (p.where) {
    case field::function:
      return contains(f.function, p.needle) && (p.also == nullptr || contains(f.function, p.also));
    case field::module_name:
      return f.function.empty() && base_name(f.module).rfind(p.needle, 0) == 0;
    case field::module_path:
      return f.function.empty() && contains(f.module, p.needle);
  }
  return false;
}

}  // namespace

const std::vector<framework>& frameworks() { return k_frameworks; }

const framework* framework_of(const frame& f) {
  for (const pattern& p : k_patterns)
    if (matches(p, f)) return &k_frameworks[p.fw];
  return nullptr;
}

const framework* framework_of(const site& s, std::size_t* frame_index) {
  for (std::size_t i = 0; i < s.frames.size(); ++i) {
    const framework* fw = framework_of(s.frames[i]);
    if (fw == nullptr) continue;
    bool excluded = false;
    for (const exclusion& e : k_exclusions) {
      if (&k_frameworks[e.fw] != fw) continue;
      if (e.innermost) {
        excluded = excluded || contains(s.frames[i].function, e.function);
      } else {
        for (const frame& f : s.frames) excluded = excluded || contains(f.function, e.function);
      }
    }
    if (excluded) return nullptr;  // the framework's frames further out belong to the same path
    if (frame_index != nullptr) *frame_index = i;
    return fw;
  }
  return nullptr;
}

std::vector<framework_use> frameworks_used(const std::vector<site>& sites) {
  std::vector<framework_use> uses(k_frameworks.size());
  for (const site& s : sites) {
    const framework* fw = framework_of(s);
    if (fw == nullptr) continue;
    framework_use& u = uses[static_cast<std::size_t>(fw - k_frameworks.data())];
    u.fw = fw;
    ++u.sites;
    u.bytes_at_peak += s.at_process_peak;
    u.live_bytes += s.counters.live_bytes;
    u.bytes_allocated += s.counters.bytes_allocated;
  }
  std::vector<framework_use> out;
  for (const framework_use& u : uses)
    if (u.fw != nullptr) out.push_back(u);
  return out;
}

std::string framework_json(const site& s) {
  const framework* fw = framework_of(s);
  return fw == nullptr ? "null" : json_quote(fw->name);
}

std::string frameworks_json(const std::vector<site>& sites) {
  std::string out = "[";
  for (const framework_use& u : frameworks_used(sites)) {
    if (out.size() > 1) out += ",";
    out += "{\"name\":" + json_quote(u.fw->name) + ",\"sites\":" + std::to_string(u.sites) +
           ",\"bytes_at_peak\":" + std::to_string(u.bytes_at_peak) + ",\"live_bytes\":" + std::to_string(u.live_bytes) +
           ",\"bytes_allocated\":" + std::to_string(u.bytes_allocated) + ",\"hint\":" + json_quote(u.fw->hint) + "}";
  }
  return out + "]";
}

std::string framework_notes_text(const std::vector<site>& sites, std::size_t width) {
  std::string out;
  for (const framework_use& u : frameworks_used(sites)) {
    const std::string n = std::to_string(u.sites);
    const std::string text = n + (u.sites == 1 ? " call site is " : " call sites are ") + u.fw->what +
                             " growing its cache (marked [" + u.fw->name +
                             "]): its blocks are reused by "
                             "many allocations over time, so these stacks show where the cache grew, not "
                             "what uses the memory. " +
                             u.fw->hint;
    out += wrap(text, width, "  note: ", "        ");
  }
  return out;
}

}  // namespace poolshim::stats_tool
