// Memory for long-lived tables (registrations, cached users): whole pages mapped
// for them alone and returned with munmap. Such entries live for minutes or hours
// while the requests that create them are gone in seconds; on the general heap a
// few live entries pin every page a burst of requests touched (resident memory
// several times the live data). Meant as the upstream of a std::pmr pool, which
// asks for large chunks, so there are few mappings.
//
// Thread-safety: thread-safe (each call maps or unmaps on its own); stateless.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <memory_resource>
#include <new>

namespace tandem {

class PageResource final : public std::pmr::memory_resource {
 private:
  static size_t Rounded(size_t bytes) {
    static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return (std::max<size_t>(bytes, 1) + page - 1) / page * page;
  }
  void* do_allocate(size_t bytes, size_t alignment) override {
    if (alignment > static_cast<size_t>(::sysconf(_SC_PAGESIZE))) throw std::bad_alloc();
    void* p = ::mmap(nullptr, Rounded(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t) override { ::munmap(p, Rounded(bytes)); }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

}  // namespace tandem
