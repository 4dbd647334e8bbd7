// Simulated CUDA driver: device memory accounted for the whole node, across processes, as a GPU's
// memory is (POOLSHIM_SIM_NODE_FILE). Without it each simulated process has its own devices; with
// it every process that names the same file shares one capacity per device
// (POOLSHIM_SIM_DEVICE_MEMORY): an allocation beyond what the node's processes hold fails with
// out-of-memory and cuMemGetInfo reports the node's free bytes. Layout of the file below.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sim {

// The shared file: a header with the node's total per device, and one slot per process holding
// device memory (its pid and its own bytes), so a process that died without freeing is found and
// its bytes taken off the total by the next process that claims a slot. Readers that sample the
// node (tests/bench/footprint.py) sum `total`. Every field is a lock-free atomic in shared memory.
inline constexpr std::uint32_t k_node_magic = 0x4e4d5350;  // "PSMN"
inline constexpr std::uint32_t k_node_version = 1;
inline constexpr int k_node_devices = 8;
inline constexpr int k_node_slots = 256;
struct node_slot {
  std::atomic<std::int32_t> pid;  // 0: free
  std::uint32_t pad;
  std::atomic<std::uint64_t> used[k_node_devices];
};
struct node_file {
  std::uint32_t magic;
  std::uint32_t version;
  std::atomic<std::uint64_t> total[k_node_devices];  // bytes held on each device by every process
  node_slot slots[k_node_slots];
};
static_assert(sizeof(node_slot) == 72 && offsetof(node_file, total) == 8 && offsetof(node_file, slots) == 72);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int32_t>::is_always_lock_free);

// Takes `bytes` of the node's device for this process: false when it would pass `capacity` (the
// node is full). Always true without a node file.
bool node_reserve(int device, std::size_t bytes, std::size_t capacity);
void node_release(int device, std::size_t bytes);
// The node's bytes in use on the device; false without a node file.
bool node_used(int device, std::size_t* used);

}  // namespace sim
