// sensorfuse wire protocol v1: decoding and validating one received message.
//
// docs/protocol.md is the normative description; this header follows its validation
// rules and reason names (missing_frames, bad_topic, bad_header, bad_version,
// topic_mismatch, payload_frames, bad_dtype, bad_shape, payload_size, bad_record).
// A decoded `Message` owns everything it points into: the payload zmq::message_t, and
// the msgpack::object_handle of the header (for `meta`) and of a record payload.
#pragma once

#include <zmq.hpp>

#include <msgpack.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace sensorfuse {

inline constexpr std::int64_t protocol_version = 1;

/// Largest accepted array payload (as docs/protocol.md: an array over 1 GiB is `bad_shape`).
inline constexpr std::uint64_t max_payload_bytes = std::uint64_t{1} << 30;

/// Message kinds. `idle` is consumed by `Subscriber` (liveness, loss), never returned.
enum class Kind { tensor, audio, record, bytes, eos, idle };

/// The header map (docs/protocol.md "Header keys"); optional keys stay empty when absent.
struct Header {
  std::int64_t proto = 0;
  std::string stream;
  Kind kind = Kind::eos;
  std::int64_t seq = 0;
  std::int64_t t_ns = 0;
  std::int64_t t_pub_ns = 0;
  std::string src;
  std::string session;
  std::optional<std::string> dtype;
  std::optional<std::vector<std::int64_t>> shape;
  std::optional<std::string> layout;
  std::optional<std::string> encoding;
  std::optional<std::int64_t> rate;
  std::optional<std::int64_t> sample0;
};

/// A read-only typed view over an array payload, C (row-major) order.
template <class T>
class ArrayView {
 public:
  ArrayView(const T* data, std::size_t size, std::vector<std::int64_t> shape)
      : data_(data), size_(size), shape_(std::move(shape)) {}
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  const T* data_;
  std::size_t size_;
  std::vector<std::int64_t> shape_;  // a copy: the view outlives a move of its Message
};

namespace detail {

struct DtypeInfo {
  std::string_view name;
  std::size_t itemsize;
};

// numpy names, little-endian. `bool` is one byte 0/1 and `float16` has no C++ type: they
// are viewed as uint8_t and uint16_t (reading a byte that is not 0/1 as a C++ bool is UB).
inline constexpr DtypeInfo dtypes[] = {
    {"uint8", 1}, {"int8", 1},  {"uint16", 2},  {"int16", 2},   {"uint32", 4},   {"int32", 4},
    {"uint64", 8}, {"int64", 8}, {"float16", 2}, {"float32", 4}, {"float64", 8}, {"bool", 1},
};

inline const DtypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : dtypes) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

template <class T>
bool dtype_matches(std::string_view dtype) {
  if constexpr (std::is_same_v<T, std::uint8_t>) return dtype == "uint8" || dtype == "bool";
  else if constexpr (std::is_same_v<T, std::int8_t>) return dtype == "int8";
  else if constexpr (std::is_same_v<T, std::uint16_t>) return dtype == "uint16" || dtype == "float16";
  else if constexpr (std::is_same_v<T, std::int16_t>) return dtype == "int16";
  else if constexpr (std::is_same_v<T, std::uint32_t>) return dtype == "uint32";
  else if constexpr (std::is_same_v<T, std::int32_t>) return dtype == "int32";
  else if constexpr (std::is_same_v<T, std::uint64_t>) return dtype == "uint64";
  else if constexpr (std::is_same_v<T, std::int64_t>) return dtype == "int64";
  else if constexpr (std::is_same_v<T, float>) return dtype == "float32";
  else if constexpr (std::is_same_v<T, double>) return dtype == "float64";
  else {
    static_assert(!sizeof(T), "no wire dtype for this element type");
    return false;
  }
}

inline bool is_utf8(std::string_view s) {
  std::size_t i = 0;
  const auto n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const std::uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;  // overlong, surrogate
    i += len;
  }
  return true;
}

// Every count in a msgpack value needs at least one byte of input, so limits derived from
// the buffer's size refuse a forged huge array/map before msgpack-cxx allocates for it.
inline msgpack::unpack_limit limits_for(std::size_t nbytes) {
  return msgpack::unpack_limit(nbytes, nbytes / 2, nbytes, nbytes, nbytes, /*depth=*/128);
}

// One whole msgpack value filling the buffer, or nullptr (with the reason in `error`).
inline std::unique_ptr<msgpack::object_handle> unpack_whole(const void* data, std::size_t size, std::string& error) {
  std::size_t offset = 0;
  try {
    auto handle = std::make_unique<msgpack::object_handle>(
        msgpack::unpack(static_cast<const char*>(data), size, offset, nullptr, nullptr, limits_for(size)));
    if (offset != size) {
      error = "trailing bytes after the msgpack value";
      return nullptr;
    }
    return handle;
  } catch (const msgpack::unpack_error& exc) {  // parse errors, truncation, size limits
    error = exc.what();
  } catch (const std::bad_alloc&) {
    error = "msgpack value too large";
  }
  return nullptr;
}

// Every string in a value is UTF-8 (what a msgpack decoder in Python insists on). The
// recursion is bounded by the depth limit of `limits_for`.
inline bool strings_are_utf8(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::STR:
      return is_utf8(std::string_view(o.via.str.ptr, o.via.str.size));
    case msgpack::type::ARRAY:
      return std::all_of(o.via.array.ptr, o.via.array.ptr + o.via.array.size, strings_are_utf8);
    case msgpack::type::MAP:
      return std::all_of(o.via.map.ptr, o.via.map.ptr + o.via.map.size, [](const msgpack::object_kv& kv) {
        return strings_are_utf8(kv.key) && strings_are_utf8(kv.val);
      });
    default:
      return true;
  }
}

inline std::optional<std::int64_t> as_int(const msgpack::object& o) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
  if (o.type == msgpack::type::POSITIVE_INTEGER &&
      o.via.u64 <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return static_cast<std::int64_t>(o.via.u64);
  }
  return std::nullopt;
}

inline std::optional<std::string_view> as_str(const msgpack::object& o) {
  if (o.type != msgpack::type::STR) return std::nullopt;
  std::string_view s(o.via.str.ptr, o.via.str.size);
  if (!is_utf8(s)) return std::nullopt;
  return s;
}

}  // namespace detail

/// The value of `key` in a msgpack map, or nullptr (also when `map` is not a map).
inline const msgpack::object* find(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) {
      return &kv.val;
    }
  }
  return nullptr;
}

/// A decoded message. Move-only: it owns the payload frame and the msgpack handles (on
/// the heap), so the views it hands out (array, record, meta, bytes) stay valid as long as
/// the Message or the one it was moved into lives.
class Message {
 public:
  Message() = default;
  Message(Message&&) = default;
  Message& operator=(Message&&) = default;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  const Header& header() const { return header_; }
  const std::string& stream() const { return header_.stream; }
  Kind kind() const { return header_.kind; }
  std::int64_t seq() const { return header_.seq; }
  std::int64_t t_ns() const { return header_.t_ns; }
  bool is_eos() const { return header_.kind == Kind::eos; }

  /// `meta` of the header (a msgpack map), or nullptr when absent.
  const msgpack::object* meta() const { return header_handle_ ? find(header_handle_->get(), "meta") : nullptr; }

  /// True for a state-on-join re-send (`meta.snapshot = true`) of an event still open.
  bool snapshot() const {
    const msgpack::object* m = meta();
    const msgpack::object* s = m ? find(*m, "snapshot") : nullptr;
    return s != nullptr && s->type == msgpack::type::BOOLEAN && s->via.boolean;
  }

  /// Raw payload bytes (empty for eos). For arrays, aligned for the dtype.
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

  /// `bytes` payload (e.g. UTF-8 text when `encoding` is "utf-8").
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data_), size_}; }

  /// A tensor/audio payload as T (uint8_t also reads `bool`, uint16_t also `float16`).
  /// Throws std::logic_error when the message is not an array of that dtype.
  template <class T>
  ArrayView<T> array() const {
    if (header_.kind != Kind::tensor && header_.kind != Kind::audio) {
      throw std::logic_error("sensorfuse: message on " + header_.stream + " is not an array");
    }
    if (!detail::dtype_matches<T>(*header_.dtype)) {
      throw std::logic_error("sensorfuse: message on " + header_.stream + " has dtype " + *header_.dtype);
    }
    return ArrayView<T>(reinterpret_cast<const T*>(data_), size_ / sizeof(T), *header_.shape);
  }

  /// A record payload. Throws std::logic_error when the message is not a record.
  const msgpack::object& record() const {
    if (!record_handle_) throw std::logic_error("sensorfuse: message on " + header_.stream + " is not a record");
    return record_handle_->get();
  }

 private:
  friend struct Decoder;

  Header header_;
  std::unique_ptr<msgpack::object_handle> header_handle_;
  std::unique_ptr<msgpack::object_handle> record_handle_;
  // On the heap: a small zmq message keeps its bytes inside the message_t itself, so
  // `data_` would dangle once this Message is moved if the message_t moved with it.
  std::unique_ptr<zmq::message_t> payload_;
  std::unique_ptr<std::uint64_t[]> aligned_copy_;  // only when the frame is misaligned for the dtype
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Why a message was dropped: a reason from docs/protocol.md plus a human-readable detail.
struct Malformed {
  std::string reason;
  std::string detail;
};

/// A message of a kind this client does not know (a newer protocol's addition): skipped.
struct UnknownKind {
  std::string kind;
};

using Decoded = std::variant<Message, Malformed, UnknownKind>;

struct Decoder {
  /// Validate one multipart message (moved from). Never throws on bad input.
  static Decoded decode(std::vector<zmq::message_t>&& parts) {
    if (parts.size() < 2) {
      return Malformed{"missing_frames", std::to_string(parts.size()) + " frame(s), need at least topic and header"};
    }
    const std::string_view topic(static_cast<const char*>(parts[0].data()), parts[0].size());
    if (!detail::is_utf8(topic)) return Malformed{"bad_topic", "topic frame is not UTF-8"};

    Message msg;
    std::string error;
    msg.header_handle_ = detail::unpack_whole(parts[1].data(), parts[1].size(), error);
    if (!msg.header_handle_) return Malformed{"bad_header", "header is not msgpack: " + error};
    const msgpack::object& h = msg.header_handle_->get();
    if (h.type != msgpack::type::MAP) return Malformed{"bad_header", "header is not a map"};
    // The version first: a newer header may not fit these rules at all.
    if (const msgpack::object* proto = find(h, "proto")) {
      const auto v = detail::as_int(*proto);
      if (!v || *v != protocol_version) {
        return Malformed{"bad_version", "header field 'proto' is not " + std::to_string(protocol_version)};
      }
    }
    std::string kind_name;
    if (auto bad = read_header(h, msg.header_, kind_name)) return Malformed{"bad_header", *bad};
    if (kind_name == "tensor") msg.header_.kind = Kind::tensor;
    else if (kind_name == "audio") msg.header_.kind = Kind::audio;
    else if (kind_name == "record") msg.header_.kind = Kind::record;
    else if (kind_name == "bytes") msg.header_.kind = Kind::bytes;
    else if (kind_name == "eos") msg.header_.kind = Kind::eos;
    else if (kind_name == "idle") msg.header_.kind = Kind::idle;
    else return UnknownKind{kind_name};
    if (msg.header_.stream != topic) {
      return Malformed{"topic_mismatch", "topic '" + std::string(topic) + "' but header field 'stream' is '" +
                                             msg.header_.stream + "'"};
    }
    const Kind kind = msg.header_.kind;
    const std::size_t n_payload = parts.size() - 2;
    if (kind == Kind::eos || kind == Kind::idle) return msg;  // no payload expected; extra frames ignored
    if (n_payload != 1) {
      return Malformed{"payload_frames", kind_name + " needs 1 payload frame, got " + std::to_string(n_payload)};
    }
    msg.payload_ = std::make_unique<zmq::message_t>(std::move(parts[2]));
    msg.data_ = static_cast<const std::byte*>(msg.payload_->data());
    msg.size_ = msg.payload_->size();
    if (kind == Kind::tensor || kind == Kind::audio) {
      if (auto bad = check_array(msg)) return *bad;
    } else if (kind == Kind::record) {
      msg.record_handle_ = detail::unpack_whole(msg.data_, msg.size_, error);
      if (!msg.record_handle_) return Malformed{"bad_record", "record payload is not msgpack: " + error};
      if (!detail::strings_are_utf8(msg.record_handle_->get())) {
        return Malformed{"bad_record", "record payload has a string that is not UTF-8"};
      }
    }
    return msg;
  }

 private:
  // Fills `out` from the header map; returns what is wrong, if anything (reason bad_header).
  static std::optional<std::string> read_header(const msgpack::object& h, Header& out, std::string& kind) {
    bool seen_proto = false, seen_stream = false, seen_kind = false, seen_seq = false, seen_t_ns = false;
    for (std::uint32_t i = 0; i < h.via.map.size; ++i) {
      const auto& kv = h.via.map.ptr[i];
      const auto key = detail::as_str(kv.key);
      if (!key) return "header has a key that is not a UTF-8 string";
      const msgpack::object& v = kv.val;
      const std::string field = "header field '" + std::string(*key) + "' ";
      const bool nil = v.type == msgpack::type::NIL;
      if (*key == "proto" || *key == "seq" || *key == "t_ns" || *key == "t_pub_ns") {
        const auto n = detail::as_int(v);
        if (!n) return field + "is not an int";
        if (*key == "proto") { out.proto = *n; seen_proto = true; }
        else if (*key == "seq") { out.seq = *n; seen_seq = true; }
        else if (*key == "t_ns") { out.t_ns = *n; seen_t_ns = true; }
        else out.t_pub_ns = *n;
      } else if (*key == "stream" || *key == "kind" || *key == "src" || *key == "session") {
        const auto s = detail::as_str(v);
        if (!s) return field + "is not a string";
        if (*key == "stream") { out.stream = *s; seen_stream = true; }
        else if (*key == "kind") { kind = *s; seen_kind = true; }
        else if (*key == "src") out.src = *s;
        else out.session = *s;
      } else if (*key == "dtype" || *key == "layout" || *key == "encoding") {
        if (nil) continue;
        const auto s = detail::as_str(v);
        if (!s) return field + "is not a string";
        auto& slot = *key == "dtype" ? out.dtype : *key == "layout" ? out.layout : out.encoding;
        slot = std::string(*s);
      } else if (*key == "rate" || *key == "sample0") {
        if (nil) continue;
        const auto n = detail::as_int(v);
        if (!n) return field + "is not an int";
        (*key == "rate" ? out.rate : out.sample0) = *n;
      } else if (*key == "shape") {
        if (nil) continue;
        if (v.type != msgpack::type::ARRAY) return field + "is not an array";
        std::vector<std::int64_t> dims;
        for (std::uint32_t k = 0; k < v.via.array.size; ++k) {
          const auto d = detail::as_int(v.via.array.ptr[k]);
          if (!d) return field + "has an element that is not an int";
          dims.push_back(*d);
        }
        out.shape = std::move(dims);
      } else if (*key == "meta") {
        if (v.type != msgpack::type::MAP) return field + "is not a map";
        for (std::uint32_t k = 0; k < v.via.map.size; ++k) {
          if (!detail::as_str(v.via.map.ptr[k].key)) return field + "has a key that is not a string";
        }
      }  // unknown keys are ignored (docs/protocol.md "Versioning")
    }
    if (!seen_proto) return std::string("header field 'proto' is missing");
    if (!seen_stream) return std::string("header field 'stream' is missing");
    if (!seen_kind) return std::string("header field 'kind' is missing");
    if (!seen_seq) return std::string("header field 'seq' is missing");
    if (!seen_t_ns) return std::string("header field 't_ns' is missing");
    if (out.seq < 0) return "header field 'seq' is negative (" + std::to_string(out.seq) + ")";
    return std::nullopt;
  }

  static std::optional<Malformed> check_array(Message& msg) {
    const Header& h = msg.header_;
    if (!h.dtype || !h.shape) return Malformed{"bad_header", "array kinds need header fields 'dtype' and 'shape'"};
    const detail::DtypeInfo* dtype = detail::find_dtype(*h.dtype);
    if (!dtype) return Malformed{"bad_dtype", "header field 'dtype' is '" + *h.dtype + "'"};
    std::uint64_t nbytes = dtype->itemsize;
    bool too_big = false;
    for (const std::int64_t d : *h.shape) {
      if (d < 0) return Malformed{"bad_shape", "header field 'shape' has a negative dimension"};
      const auto dim = static_cast<std::uint64_t>(d);
      if (nbytes != 0 && dim > max_payload_bytes / nbytes) too_big = true;  // keeps the product from overflowing
      nbytes = too_big ? nbytes : nbytes * dim;
    }
    if (too_big || nbytes > max_payload_bytes) return Malformed{"bad_shape", "shape is over the 1 GiB limit"};
    if (nbytes != msg.size_) {
      return Malformed{"payload_size", "dtype " + *h.dtype + " x shape is " + std::to_string(nbytes) +
                                           " bytes, payload is " + std::to_string(msg.size_)};
    }
    if (h.kind == Kind::audio && (!h.rate || *h.rate <= 0 || !h.sample0)) {
      return Malformed{"bad_header", "kind 'audio' needs header fields 'rate' > 0 and 'sample0'"};
    }
    // libzmq may hand out a frame at any offset inside its receive buffer: a typed view
    // over a misaligned address is UB, so such a payload is copied once into aligned storage.
    if (reinterpret_cast<std::uintptr_t>(msg.data_) % dtype->itemsize != 0) {
      msg.aligned_copy_.reset(new std::uint64_t[(msg.size_ + 7) / 8]);
      std::memcpy(msg.aligned_copy_.get(), msg.data_, msg.size_);
      msg.data_ = reinterpret_cast<const std::byte*>(msg.aligned_copy_.get());
    }
    return std::nullopt;
  }
};

}  // namespace sensorfuse
