// A thread of its own for work that must not run on poolshimd's loop (server.h): the loop queues
// jobs, the thread runs them in order. The object is shared with its thread, so that a server
// destroyed while a job is stuck (a close that waits, a long fill) does not wait for it. stop():
// the jobs still queued go to `abandon`, then `at_end` runs and the thread ends.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace poolshim::daemon {

template <class Job>
class job_thread {
 public:
  using job_fn = std::function<void(const Job&)>;
  static std::shared_ptr<job_thread> start(job_fn run, job_fn abandon, std::function<void()> at_end = {}) {
    auto t = std::make_shared<job_thread>();
    t->run_ = std::move(run);
    t->abandon_ = std::move(abandon);
    t->at_end_ = std::move(at_end);
    std::thread([t] { t->work(); }).detach();
    return t;
  }
  void put(Job j) {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(j));
    cv_.notify_one();
  }
  // The jobs not finished yet: queued, and the one running (e.g. the descriptors still open).
  std::vector<Job> pending() const {
    std::lock_guard lock(mutex_);
    std::vector<Job> out(jobs_.begin(), jobs_.end());
    if (running_) out.push_back(*running_);
    return out;
  }
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cv_.notify_one();
  }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) {
        const std::deque<Job> left = std::exchange(jobs_, {});
        lock.unlock();
        for (const Job& j : left) abandon_(j);
        if (at_end_) at_end_();
        return;
      }
      running_ = std::move(jobs_.front());
      jobs_.pop_front();
      const Job j = *running_;
      lock.unlock();
      run_(j);
      lock.lock();
      running_.reset();
    }
  }
  job_fn run_, abandon_;
  std::function<void()> at_end_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::optional<Job> running_;
  bool stopping_ = false;
};

}  // namespace poolshim::daemon
