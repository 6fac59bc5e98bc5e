// A minimal std::expected / std::unexpected for the fuzz build only.
//
// Why this exists: the fuzz target must be built with Clang (libFuzzer), and
// Debian 12's clang++ 14 cannot use libstdc++ 12's <expected> — the header is
// empty unless __cpp_concepts >= 202002L, and clang 14 lacks the conditionally
// trivial special members (P0848) it needs. run_fuzz.sh and the TANDEM_FUZZ CMake
// option force-include this file only when a probe shows <expected> unusable; the
// production build (g++ 12) never sees it. It implements the subset tandem uses:
// construction from values / unexpected / in_place / unexpect, observers, value_or,
// and the void specialization.
//
// Thread-safety: like std::expected.
#pragma once

#include <version>

#if !defined(__cpp_lib_expected)

#include <cstdlib>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

namespace std {

template <class E>
class unexpected {
 public:
  template <class Err = E>
    requires(!is_same_v<remove_cvref_t<Err>, unexpected> && !is_same_v<remove_cvref_t<Err>, in_place_t> &&
             is_constructible_v<E, Err>)
  constexpr explicit unexpected(Err&& e) : error_(std::forward<Err>(e)) {}

  constexpr const E& error() const& noexcept { return error_; }
  constexpr E& error() & noexcept { return error_; }
  constexpr E&& error() && noexcept { return std::move(error_); }

 private:
  E error_;
};

template <class E>
unexpected(E) -> unexpected<E>;

struct unexpect_t {
  explicit unexpect_t() = default;
};
inline constexpr unexpect_t unexpect{};

template <class E>
class bad_expected_access : public exception {
 public:
  explicit bad_expected_access(E e) : error_(std::move(e)) {}
  const char* what() const noexcept override { return "bad expected access"; }
  const E& error() const& noexcept { return error_; }

 private:
  E error_;
};

namespace expected_compat_detail {
template <class T>
struct is_unexpected : false_type {};
template <class E>
struct is_unexpected<unexpected<E>> : true_type {};
}  // namespace expected_compat_detail

template <class T, class E>
class expected {
 public:
  using value_type = T;
  using error_type = E;
  using unexpected_type = unexpected<E>;

  constexpr expected() : v_(in_place_index<0>) {}
  constexpr expected(const expected&) = default;
  constexpr expected(expected&&) = default;
  constexpr expected& operator=(const expected&) = default;
  constexpr expected& operator=(expected&&) = default;

  template <class U = T>
    requires(!is_same_v<remove_cvref_t<U>, expected> && !is_same_v<remove_cvref_t<U>, in_place_t> &&
             !expected_compat_detail::is_unexpected<remove_cvref_t<U>>::value && is_constructible_v<T, U>)
  constexpr expected(U&& v) : v_(in_place_index<0>, std::forward<U>(v)) {}

  template <class G>
    requires is_constructible_v<E, const G&>
  constexpr expected(const unexpected<G>& u) : v_(in_place_index<1>, u.error()) {}

  template <class G>
    requires is_constructible_v<E, G>
  constexpr expected(unexpected<G>&& u) : v_(in_place_index<1>, std::move(u).error()) {}

  template <class... Args>
  constexpr explicit expected(in_place_t, Args&&... args) : v_(in_place_index<0>, std::forward<Args>(args)...) {}

  template <class... Args>
  constexpr explicit expected(unexpect_t, Args&&... args) : v_(in_place_index<1>, std::forward<Args>(args)...) {}

  template <class G>
  constexpr expected& operator=(const unexpected<G>& u) {
    v_.template emplace<1>(u.error());
    return *this;
  }
  template <class G>
  constexpr expected& operator=(unexpected<G>&& u) {
    v_.template emplace<1>(std::move(u).error());
    return *this;
  }
  template <class U = T>
    requires(!is_same_v<remove_cvref_t<U>, expected> &&
             !expected_compat_detail::is_unexpected<remove_cvref_t<U>>::value && is_constructible_v<T, U>)
  constexpr expected& operator=(U&& v) {
    v_.template emplace<0>(std::forward<U>(v));
    return *this;
  }

  template <class... Args>
  constexpr T& emplace(Args&&... args) {
    return v_.template emplace<0>(std::forward<Args>(args)...);
  }

  constexpr bool has_value() const noexcept { return v_.index() == 0; }
  constexpr explicit operator bool() const noexcept { return has_value(); }

  constexpr T* operator->() noexcept { return get_if<0>(&v_); }
  constexpr const T* operator->() const noexcept { return get_if<0>(&v_); }
  constexpr T& operator*() & noexcept { return *get_if<0>(&v_); }
  constexpr const T& operator*() const& noexcept { return *get_if<0>(&v_); }
  constexpr T&& operator*() && noexcept { return std::move(*get_if<0>(&v_)); }

  constexpr T& value() & {
    Check();
    return **this;
  }
  constexpr const T& value() const& {
    Check();
    return **this;
  }
  constexpr T&& value() && {
    Check();
    return std::move(**this);
  }

  constexpr E& error() & noexcept { return *get_if<1>(&v_); }
  constexpr const E& error() const& noexcept { return *get_if<1>(&v_); }
  constexpr E&& error() && noexcept { return std::move(*get_if<1>(&v_)); }

  template <class U>
  constexpr T value_or(U&& fallback) const& {
    return has_value() ? **this : static_cast<T>(std::forward<U>(fallback));
  }
  template <class U>
  constexpr T value_or(U&& fallback) && {
    return has_value() ? std::move(**this) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  constexpr void Check() const {
    if (!has_value()) throw bad_expected_access<E>(error());
  }

  variant<T, E> v_;
};

template <class E>
class expected<void, E> {
 public:
  using value_type = void;
  using error_type = E;
  using unexpected_type = unexpected<E>;

  constexpr expected() noexcept : v_(in_place_index<0>) {}
  constexpr expected(const expected&) = default;
  constexpr expected(expected&&) = default;
  constexpr expected& operator=(const expected&) = default;
  constexpr expected& operator=(expected&&) = default;

  template <class G>
    requires is_constructible_v<E, const G&>
  constexpr expected(const unexpected<G>& u) : v_(in_place_index<1>, u.error()) {}
  template <class G>
    requires is_constructible_v<E, G>
  constexpr expected(unexpected<G>&& u) : v_(in_place_index<1>, std::move(u).error()) {}
  constexpr explicit expected(in_place_t) noexcept : v_(in_place_index<0>) {}
  template <class... Args>
  constexpr explicit expected(unexpect_t, Args&&... args) : v_(in_place_index<1>, std::forward<Args>(args)...) {}

  template <class G>
  constexpr expected& operator=(const unexpected<G>& u) {
    v_.template emplace<1>(u.error());
    return *this;
  }
  template <class G>
  constexpr expected& operator=(unexpected<G>&& u) {
    v_.template emplace<1>(std::move(u).error());
    return *this;
  }

  constexpr bool has_value() const noexcept { return v_.index() == 0; }
  constexpr explicit operator bool() const noexcept { return has_value(); }
  constexpr void operator*() const noexcept {}
  constexpr void value() const {
    if (!has_value()) throw bad_expected_access<E>(error());
  }
  constexpr E& error() & noexcept { return *get_if<1>(&v_); }
  constexpr const E& error() const& noexcept { return *get_if<1>(&v_); }
  constexpr E&& error() && noexcept { return std::move(*get_if<1>(&v_)); }

 private:
  variant<monostate, E> v_;
};

}  // namespace std

#endif  // !defined(__cpp_lib_expected)
