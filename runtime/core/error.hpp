#pragma once
// Errors are values: every fallible call returns troupe::expected<T>, holding either a T or an
// troupe::error (a code from the enum below plus a message that names the problem).

#include <cassert>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace troupe {

/// The one documented error enum of troupe.
enum class errc : int {
  ok = 0,
  invalid_argument,        ///< a caller passed a value outside what the call accepts
  io_error,                ///< open/read/write/mmap failed (the message names the path)
  not_found,               ///< a file, tensor, key or model that was asked for does not exist
  truncated,               ///< a file ends before the data its header promises
  bad_format,              ///< a file's bytes do not follow its format (bad magic, bad offsets, ...)
  unsupported_type,        ///< a tensor or value type this build cannot handle (names the type)
  unsupported_architecture,///< a model architecture troupe does not implement
  shape_mismatch,          ///< a tensor's shape differs from what the hyper-parameters imply
  out_of_memory,           ///< an allocation failed
  no_kv_blocks,            ///< the KV block pool has no room for the request
  context_overflow,        ///< a sequence would grow past the model's context length
  unavailable,             ///< the thing exists but cannot serve now (no healthy replica, not ready)
  internal,                ///< a bug: an invariant did not hold
};

/// Short stable name of an error code ("bad_format", ...), for logs and JSON.
const char* to_string(errc code) noexcept;

/// An error value: a code and a human-readable message.
class error {
 public:
  error() = default;
  error(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  /// "code: message"
  std::string what() const;

 private:
  errc code_ = errc::ok;
  std::string message_;
};

/// Wraps an error so that expected<T> can be constructed from it unambiguously.
struct unexpected {
  error err;
};

inline unexpected make_error(errc code, std::string message) {
  return unexpected{error{code, std::move(message)}};
}

/// Either a value or an error (a small subset of C++23 std::expected).
template <class T>
class [[nodiscard]] expected {
 public:
  expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  template <class U, class = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                              !std::is_same_v<std::decay_t<U>, expected> &&
                                              !std::is_same_v<std::decay_t<U>, unexpected>>>
  expected(U&& value) : v_(std::in_place_index<0>, T(std::forward<U>(value))) {}
  expected(unexpected u) : v_(std::in_place_index<1>, std::move(u.err)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(v_); }
  const T& value() const& { assert(has_value()); return std::get<0>(v_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const troupe::error& error() const& { assert(!has_value()); return std::get<1>(v_); }

 private:
  std::variant<T, troupe::error> v_;
};

/// expected<void>: success or an error.
template <>
class [[nodiscard]] expected<void> {
 public:
  expected() = default;
  expected(unexpected u) : err_(std::move(u.err)), ok_(false) {}
  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const troupe::error& error() const& { return err_; }

 private:
  troupe::error err_;
  bool ok_ = true;
};

using status = expected<void>;

}  // namespace troupe

/// Propagates the error of an expected-returning expression from the current function.
#define TROUPE_TRY(expr)                                                  \
  do {                                                                    \
    auto&& troupe_try_result_ = (expr);                                   \
    if (!troupe_try_result_) return ::troupe::unexpected{troupe_try_result_.error()}; \
  } while (0)
