// SmallVector: a vector of trivially copyable values that keeps its first N elements
// inline and moves to the heap only when it grows past N. The SIP parser uses it so
// that parsing a typical message allocates nothing per header.
//
// Thread-safety: like std::vector — const use from many threads is safe, mutation
// needs external synchronization. The vector owns its elements.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <type_traits>

namespace tandem::sip {

template <typename T, size_t N>
class SmallVector {
  static_assert(std::is_trivially_copyable_v<T>, "SmallVector holds trivially copyable values");
  static_assert(N > 0);

 public:
  SmallVector() = default;
  SmallVector(std::initializer_list<T> values) {
    for (const T& v : values) push_back(v);
  }
  SmallVector(const SmallVector& other) { CopyFrom(other); }
  SmallVector& operator=(const SmallVector& other) {
    if (this != &other) {
      size_ = 0;
      CopyFrom(other);
    }
    return *this;
  }
  SmallVector(SmallVector&& other) noexcept { MoveFrom(other); }
  SmallVector& operator=(SmallVector&& other) noexcept {
    if (this != &other) {
      heap_.reset();
      capacity_ = N;
      MoveFrom(other);
    }
    return *this;
  }
  ~SmallVector() = default;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  T* data() { return heap_ ? heap_.get() : Inline(); }
  const T* data() const { return heap_ ? heap_.get() : Inline(); }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  T& front() { return data()[0]; }
  const T& front() const { return data()[0]; }
  T& back() { return data()[size_ - 1]; }
  const T& back() const { return data()[size_ - 1]; }

  void clear() { size_ = 0; }
  void push_back(const T& value) {
    if (size_ == capacity_) Grow(capacity_ * 2);
    data()[size_++] = value;
  }
  void pop_back() { --size_; }
  void insert(size_t index, const T& value) {
    if (size_ == capacity_) Grow(capacity_ * 2);
    T* d = data();
    std::memmove(static_cast<void*>(d + index + 1), d + index, (size_ - index) * sizeof(T));
    d[index] = value;
    ++size_;
  }
  void erase(size_t index) {
    T* d = data();
    std::memmove(static_cast<void*>(d + index), d + index + 1, (size_ - index - 1) * sizeof(T));
    --size_;
  }
  void reserve(size_t n) {
    if (n > capacity_) Grow(n);
  }

 private:
  void Grow(size_t new_capacity) {
    auto bigger = std::make_unique_for_overwrite<T[]>(new_capacity);
    std::memcpy(static_cast<void*>(bigger.get()), data(), size_ * sizeof(T));
    heap_ = std::move(bigger);
    capacity_ = new_capacity;
  }
  void CopyFrom(const SmallVector& other) {
    reserve(other.size_);
    std::memcpy(static_cast<void*>(data()), other.data(), other.size_ * sizeof(T));
    size_ = other.size_;
  }
// GCC cannot always see that the inline branch below only runs with size_ <= N
// elements written, and warns about copying uninitialized storage.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  void MoveFrom(SmallVector& other) {
    if (other.heap_) {
      heap_ = std::move(other.heap_);
      capacity_ = other.capacity_;
    } else {
      // other.size_ <= N here; the min() lets the compiler see it.
      std::memcpy(inline_, other.inline_, std::min(other.size_, N) * sizeof(T));
    }
    size_ = other.size_;
    other.size_ = 0;
    other.capacity_ = N;
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

  // Raw storage: elements are created by memcpy/assignment (T is trivially copyable,
  // hence an implicit-lifetime type), so constructing a vector costs nothing.
  T* Inline() { return std::launder(reinterpret_cast<T*>(inline_)); }
  const T* Inline() const { return std::launder(reinterpret_cast<const T*>(inline_)); }

  alignas(T) unsigned char inline_[N * sizeof(T)];
  std::unique_ptr<T[]> heap_;
  size_t size_ = 0;
  size_t capacity_ = N;
};

}  // namespace tandem::sip
