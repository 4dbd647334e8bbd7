// Claiming and releasing a thread's shard of the stats file (thread_shard.h).
#include "stats/thread_shard.h"

#include <unistd.h>

namespace poolshim::stats {

poolshim_stats_shard* shard_set::claim() noexcept {
  for (std::uint32_t i = 0; i < count_; ++i) {
    std::uint32_t expected = 0;
    if (atomic_at(shards_[i].in_use).load(std::memory_order_relaxed) != 0 ||
        !atomic_at(shards_[i].in_use).compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
      continue;
    shards_[i].tid = static_cast<std::int32_t>(gettid());
    return &shards_[i];
  }
  return nullptr;
}

void shard_set::release(poolshim_stats_shard* sh) noexcept {
  for (poolshim_stats_shard_site& e : sh->sites) fold_site(e);
  for (int i = 0; i < POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS; ++i) {
    poolshim_stats_fold_kind(&kinds_[i], &sh->kinds[i], 1);
    sh->kinds[i] = {};
  }
  if (kind_sizes_ != nullptr) {
    poolshim_stats_fold_kind_sizes(kind_sizes_, sh->kind_sizes, 1);
    for (auto& k : sh->kind_sizes)
      for (std::uint32_t& b : k) b = 0;
  }
  atomic_at(*events_).fetch_add(sh->events, std::memory_order_relaxed);
  sh->events = 0;
  sh->tid = 0;
  atomic_at(sh->in_use).store(0, std::memory_order_release);
}

}  // namespace poolshim::stats
