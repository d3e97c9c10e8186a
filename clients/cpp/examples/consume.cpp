// consume: subscribe to sensorfuse streams, print one line per message, then a summary
// per stream. Exit 0 when every stream ended with its end of stream, 1 otherwise, 2 on
// a usage error.
//
//   consume [--keys DIR] [--timeout SECONDS] [--quiet] ENDPOINT STREAM [ENDPOINT STREAM ...]
//   consume tcp://127.0.0.1:5600 cam0/frame tcp://127.0.0.1:5601 perceive/events
#include <sensorfuse/client.hpp>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t interrupted = 0;

struct Stream {
  std::unique_ptr<sensorfuse::Subscriber> sub;
  bool gone = false;
  bool active() const { return !sub->ended() && !gone; }
};

const char* kind_name(sensorfuse::Kind kind) {
  switch (kind) {
    case sensorfuse::Kind::tensor: return "tensor";
    case sensorfuse::Kind::audio: return "audio";
    case sensorfuse::Kind::record: return "record";
    case sensorfuse::Kind::bytes: return "bytes";
    case sensorfuse::Kind::eos: return "eos";
    case sensorfuse::Kind::idle: return "idle";
  }
  return "?";
}

// The first element of an array payload, read through the typed view.
std::string first_value(const sensorfuse::Message& msg) {
  const std::string& dtype = *msg.header().dtype;
  std::ostringstream out;
  if (msg.size() == 0) return "none";
  if (dtype == "uint8" || dtype == "bool") out << int(msg.array<std::uint8_t>()[0]);
  else if (dtype == "int8") out << int(msg.array<std::int8_t>()[0]);
  else if (dtype == "uint16" || dtype == "float16") out << msg.array<std::uint16_t>()[0];
  else if (dtype == "int16") out << msg.array<std::int16_t>()[0];
  else if (dtype == "uint32") out << msg.array<std::uint32_t>()[0];
  else if (dtype == "int32") out << msg.array<std::int32_t>()[0];
  else if (dtype == "uint64") out << msg.array<std::uint64_t>()[0];
  else if (dtype == "int64") out << msg.array<std::int64_t>()[0];
  else if (dtype == "float32") out << msg.array<float>()[0];
  else out << msg.array<double>()[0];
  return out.str();
}

// `type`, `phase` and `event_id` of an event; the key count of any other map.
std::string record_summary(const msgpack::object& record) {
  if (record.type != msgpack::type::MAP) return "value";
  std::ostringstream out;
  out << "keys=" << record.via.map.size;
  for (const char* key : {"type", "phase", "event_id"}) {
    const msgpack::object* v = sensorfuse::find(record, key);
    if (v && v->type == msgpack::type::STR) out << ' ' << key << '=' << std::string(v->via.str.ptr, v->via.str.size);
  }
  return out.str();
}

void print_message(const sensorfuse::Message& msg) {
  const sensorfuse::Header& h = msg.header();
  std::cout << h.stream << ' ' << kind_name(h.kind) << " seq=" << h.seq << " t_ns=" << h.t_ns;
  if (h.kind == sensorfuse::Kind::tensor || h.kind == sensorfuse::Kind::audio) {
    std::cout << " shape=[";
    for (std::size_t i = 0; i < h.shape->size(); ++i) std::cout << (i ? "," : "") << (*h.shape)[i];
    std::cout << "] dtype=" << *h.dtype << " first=" << first_value(msg);
    if (h.layout) std::cout << " layout=" << *h.layout;
    if (h.rate) std::cout << " rate=" << *h.rate << " sample0=" << *h.sample0;
  } else if (h.kind == sensorfuse::Kind::record) {
    std::cout << ' ' << record_summary(msg.record()) << " snapshot=" << (msg.snapshot() ? "yes" : "no");
  } else if (h.kind == sensorfuse::Kind::bytes) {
    std::cout << " size=" << msg.size() << " encoding=" << h.encoding.value_or("");
  }
  std::cout << '\n';
}

void print_summary(const Stream& s) {
  const sensorfuse::Counts& c = s.sub->counts();
  std::cout << "summary stream=" << s.sub->stream() << " endpoint=" << s.sub->endpoint() << " received=" << c.received
            << " lost=" << c.lost << " seq_resets=" << c.seq_resets << " idle=" << c.idle
            << " unknown_kind=" << c.unknown_kind << " malformed=" << c.malformed_total();
  for (const auto& [reason, count] : c.malformed) std::cout << " malformed." << reason << '=' << count;
  std::cout << " eos=" << (s.sub->ended() ? "yes" : "no") << " gone=" << (s.gone ? "yes" : "no") << '\n';
}

// Reads everything queued on one stream now (liveness is checked on the way).
void drain(Stream& s, bool quiet) {
  sensorfuse::Message msg;
  for (;;) {
    switch (s.sub->recv(msg, std::chrono::milliseconds(0))) {
      case sensorfuse::Status::message:
      case sensorfuse::Status::end_of_stream:
        if (!quiet) print_message(msg);
        continue;
      case sensorfuse::Status::gone:
        s.gone = true;
        std::cout << s.sub->stream() << " gone after_ms=" << s.sub->gone_after().count() << '\n';
        return;
      case sensorfuse::Status::timeout:
      case sensorfuse::Status::closed:
        return;
    }
  }
}

int usage(const std::string& why) {
  std::cerr << "consume: " << why << "\nusage: consume [--keys DIR] [--timeout SECONDS] [--quiet] "
            << "ENDPOINT STREAM [ENDPOINT STREAM ...]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  sensorfuse::Options options;
  double timeout_s = 60;
  bool quiet = false;
  std::vector<std::string> pairs;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if ((arg == "--keys" || arg == "--timeout") && i + 1 >= argc) return usage(arg + " needs a value");
      if (arg == "--keys") options.curve = sensorfuse::load_curve_keys(argv[++i]);
      else if (arg == "--timeout") timeout_s = std::stod(argv[++i]);
      else if (arg == "--quiet") quiet = true;
      else pairs.push_back(arg);
    }
  } catch (const std::exception& exc) {  // an unreadable key file, a timeout that is not a number
    return usage(exc.what());
  }
  if (pairs.empty() || pairs.size() % 2 != 0) return usage("give ENDPOINT STREAM pairs");

  std::signal(SIGINT, [](int) { interrupted = 1; });
  std::signal(SIGTERM, [](int) { interrupted = 1; });
  zmq::context_t ctx;
  std::vector<Stream> streams;
  for (std::size_t i = 0; i < pairs.size(); i += 2) {
    streams.push_back({std::make_unique<sensorfuse::Subscriber>(ctx, pairs[i], pairs[i + 1], options)});
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    std::vector<zmq::pollitem_t> items;
    std::vector<Stream*> polled;
    for (auto& s : streams) {
      if (!s.active()) continue;
      items.push_back({s.sub->socket().handle(), 0, ZMQ_POLLIN, 0});
      polled.push_back(&s);
    }
    if (items.empty() || interrupted || std::chrono::steady_clock::now() >= deadline) break;
    try {
      zmq::poll(items, std::chrono::milliseconds(100));  // short: liveness is checked in drain
    } catch (const zmq::error_t& exc) {
      if (exc.num() != EINTR) throw;
      continue;
    }
    for (Stream* s : polled) drain(*s, quiet);
  }

  bool all_ended = true;
  for (const auto& s : streams) {
    print_summary(s);
    all_ended = all_ended && s.sub->ended();
  }
  std::cout.flush();
  return all_ended ? 0 : 1;
}
