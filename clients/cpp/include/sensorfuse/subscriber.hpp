// A subscriber to one sensorfuse stream: exact topic match, optional CURVE, decoded
// messages, loss/malformed counts, end of stream and liveness (docs/protocol.md).
#pragma once

#include "sensorfuse/keys.hpp"
#include "sensorfuse/wire.hpp"

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace sensorfuse {

/// What `Subscriber::recv` found.
enum class Status {
  message,        // a data message (tensor, audio, record, bytes) is in `out`
  end_of_stream,  // the eos is in `out`; the socket is closed, later calls return `closed`
  timeout,        // nothing within the timeout (or a signal interrupted the wait)
  gone,           // heard from before, then nothing at all for 3 x the idle period
  closed,         // called again after the end of stream
};

struct Counts {
  std::uint64_t received = 0;      // data messages returned
  std::uint64_t lost = 0;          // missing seq numbers (gaps, also revealed by idle and eos)
  std::uint64_t seq_resets = 0;    // seq went backwards: the producer restarted
  std::uint64_t idle = 0;          // idle messages consumed (never returned)
  std::uint64_t unknown_kind = 0;  // kinds of a newer protocol, skipped
  std::map<std::string, std::uint64_t> malformed;  // by reason (docs/protocol.md)

  std::uint64_t malformed_total() const {
    std::uint64_t n = 0;
    for (const auto& [reason, count] : malformed) n += count;
    return n;
  }
};

struct Options {
  std::optional<CurveKeys> curve;  // required by publishers bound beyond loopback
  int receive_hwm = 1000;          // ZeroMQ receive queue (messages); beyond it the publisher drops
};

class Subscriber {
 public:
  using Clock = std::chrono::steady_clock;

  /// Connects (ZeroMQ retries in the background until the publisher is there).
  Subscriber(zmq::context_t& ctx, std::string endpoint, std::string stream, const Options& options = {})
      : endpoint_(std::move(endpoint)), stream_(std::move(stream)), sock_(ctx, zmq::socket_type::sub) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::rcvhwm, options.receive_hwm);
    if (options.curve) {
      sock_.set(zmq::sockopt::curve_serverkey, options.curve->server_public);
      sock_.set(zmq::sockopt::curve_publickey, options.curve->client_public);
      sock_.set(zmq::sockopt::curve_secretkey, options.curve->client_secret);
    }
    sock_.set(zmq::sockopt::subscribe, stream_);  // a prefix match: topics are compared exactly below
    sock_.connect(endpoint_);
  }

  /// Waits up to `timeout` for the next data message or the end of stream. Malformed
  /// messages, idle messages and other topics are consumed (and counted) on the way.
  Status recv(Message& out, std::chrono::milliseconds timeout) {
    if (ended_) return Status::closed;
    // Clamped so that `now + timeout` cannot overflow (milliseconds::max() means "a long time").
    timeout = std::clamp(timeout, std::chrono::milliseconds::zero(), std::chrono::milliseconds(std::chrono::hours(24 * 365)));
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto now = Clock::now();
      auto wait = deadline - now;
      if (last_heard_) wait = std::min(wait, Clock::duration(*last_heard_ + gone_after() - now));
      std::vector<zmq::message_t> parts;
      try {
        if (poll(std::max(wait, Clock::duration::zero()))) {
          if (zmq::recv_multipart(sock_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
            last_heard_ = Clock::now();
            if (auto status = take(std::move(parts), out)) return *status;
            continue;
          }
        }
      } catch (const zmq::error_t& exc) {
        if (exc.num() != EINTR) throw;
        return Status::timeout;  // a signal: let the caller look at its flags
      }
      now = Clock::now();
      if (last_heard_ && now >= *last_heard_ + gone_after()) return Status::gone;
      if (now >= deadline) return Status::timeout;
    }
  }

  const std::string& endpoint() const { return endpoint_; }
  const std::string& stream() const { return stream_; }
  const Counts& counts() const { return counts_; }
  /// The last malformed message's reason and detail (empty before the first).
  const Malformed& last_malformed() const { return last_malformed_; }
  bool ended() const { return ended_; }
  /// The publisher's idle period: from the last idle message's `meta.idle_ms`, else 1 s.
  std::chrono::milliseconds idle_period() const { return idle_period_; }
  /// Silence after which a stream heard from before counts as gone (3 x idle period).
  std::chrono::milliseconds gone_after() const { return 3 * idle_period_; }
  /// The socket, to poll several subscribers at once; closed after the end of stream.
  zmq::socket_ref socket() { return sock_; }

 private:
  bool poll(Clock::duration wait) {
    // Round up, so a wait shorter than 1 ms does not spin.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait);
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    return zmq::poll(&item, 1, ms) > 0;
  }

  // The status to return for this message, or nullopt to keep reading.
  std::optional<Status> take(std::vector<zmq::message_t>&& parts, Message& out) {
    if (!parts.empty() && parts[0].to_string_view() != stream_ && detail::is_utf8(parts[0].to_string_view())) {
      return std::nullopt;  // another stream whose name starts with ours (SUB filters by prefix)
    }
    Decoded decoded = Decoder::decode(std::move(parts));
    if (auto* bad = std::get_if<Malformed>(&decoded)) {
      ++counts_.malformed[bad->reason];
      last_malformed_ = std::move(*bad);
      return std::nullopt;
    }
    if (std::holds_alternative<UnknownKind>(decoded)) {
      ++counts_.unknown_kind;
      return std::nullopt;
    }
    Message& msg = std::get<Message>(decoded);
    switch (msg.kind()) {
      case Kind::idle:
        ++counts_.idle;
        expect_next(msg.seq());  // an idle carries the seq the next data message will have
        if (const auto* m = msg.meta()) {
          const auto* v = find(*m, "idle_ms");
          const auto ms = v ? detail::as_int(*v) : std::nullopt;
          if (ms && *ms > 0) idle_period_ = std::chrono::milliseconds(*ms);
        }
        return std::nullopt;
      case Kind::eos:
        expect_next(msg.seq());  // one past the last data message
        ended_ = true;
        // A sensorfuse publisher holds its socket open until its subscribers leave: leave.
        sock_.close();
        out = std::move(msg);
        return Status::end_of_stream;
      default:
        expect_next(msg.seq());
        next_seq_ = msg.seq() + 1;
        ++counts_.received;
        out = std::move(msg);
        return Status::message;
    }
  }

  // Counts the seq numbers skipped before `seq` (the first message sets the baseline).
  void expect_next(std::int64_t seq) {
    if (next_seq_) {
      if (seq > *next_seq_) counts_.lost += static_cast<std::uint64_t>(seq - *next_seq_);
      else if (seq < *next_seq_) ++counts_.seq_resets;
    }
    next_seq_ = seq;
  }

  std::string endpoint_;
  std::string stream_;
  zmq::socket_t sock_;
  Counts counts_;
  Malformed last_malformed_;
  std::optional<std::int64_t> next_seq_;
  std::optional<Clock::time_point> last_heard_;
  std::chrono::milliseconds idle_period_{1000};
  bool ended_ = false;
};

}  // namespace sensorfuse
