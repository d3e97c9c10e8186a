// sensorfuse C++ client (header-only, C++17): everything a consumer includes.
//
//   wire.hpp        decoding and validating one message (Message, Header, ArrayView)
//   keys.hpp        CurveZMQ keys from `sensorfuse keys generate DIR`
//   subscriber.hpp  Subscriber: one stream, counts, end of stream, liveness
//
// Needs libzmq, cppzmq and msgpack-cxx (Debian: libzmq3-dev cppzmq-dev libmsgpack-cxx-dev);
// see clients/cpp/README.md for the compile command.
#pragma once

#include "sensorfuse/keys.hpp"
#include "sensorfuse/subscriber.hpp"
#include "sensorfuse/wire.hpp"
