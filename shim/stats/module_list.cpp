// Listing the loaded modules and their build-ids into the stats file (module_list.h).
#include "stats/module_list.h"

#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace poolshim::stats {

std::uint32_t read_build_id(const dl_phdr_info& info, std::uint8_t* out, std::uint32_t cap) noexcept {
  std::uint32_t size = 0;
  for (int k = 0; k < info.dlpi_phnum; ++k) {
    if (info.dlpi_phdr[k].p_type != PT_NOTE) continue;
    const auto* at = reinterpret_cast<const unsigned char*>(info.dlpi_addr + info.dlpi_phdr[k].p_vaddr);
    const unsigned char* end = at + info.dlpi_phdr[k].p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      const auto* nh = reinterpret_cast<const ElfW(Nhdr)*>(at);
      const unsigned char* desc = at + sizeof *nh + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && desc + nh->n_descsz <= end && nh->n_descsz <= cap) {
        std::memcpy(out, desc, nh->n_descsz);
        size = nh->n_descsz;
      }
      at = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return size;
}

void module_list::refresh() noexcept {
  if (count_ == nullptr) return;
  dl_iterate_phdr(
      [](dl_phdr_info* i, std::size_t, void* p) {
        auto& list = *static_cast<module_list*>(p);
        std::uintptr_t lo = UINTPTR_MAX, hi = 0;
        for (int k = 0; k < i->dlpi_phnum; ++k) {
          if (i->dlpi_phdr[k].p_type != PT_LOAD) continue;
          lo = std::min<std::uintptr_t>(lo, i->dlpi_addr + i->dlpi_phdr[k].p_vaddr);
          hi = std::max<std::uintptr_t>(hi, i->dlpi_addr + i->dlpi_phdr[k].p_vaddr + i->dlpi_phdr[k].p_memsz);
        }
        if (hi == 0) return 0;
        auto& count = atomic_at(*list.count_);
        const std::uint32_t n = count.load(std::memory_order_acquire);
        for (std::uint32_t m = 0; m < n; ++m)
          if (list.modules_[m].start == lo && list.modules_[m].end == hi) return 0;
        if (n >= list.capacity_) return 1;
        poolshim_stats_module& mod = list.modules_[n];
        mod.start = lo;
        mod.end = hi;
        mod.load_bias = i->dlpi_addr;
        const char* name = i->dlpi_name != nullptr && i->dlpi_name[0] != '\0' ? i->dlpi_name : nullptr;
        if (name == nullptr) {  // the main program
          const ssize_t len = readlink("/proc/self/exe", mod.path, sizeof mod.path - 1);
          mod.path[len > 0 ? len : 0] = '\0';
        } else {
          std::snprintf(mod.path, sizeof mod.path, "%s", name);
        }
        mod.build_id_size = read_build_id(*i, mod.build_id, sizeof mod.build_id);
        // Published complete: a reader takes module_count with acquire order.
        count.store(n + 1, std::memory_order_release);
        return 0;
      },
      this);
}

}  // namespace poolshim::stats
