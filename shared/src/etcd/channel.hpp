// The Client's insides, shared by client.cpp and watch.cpp: one gRPC channel and stubs per endpoint, and which
// endpoint answered last (calls start there).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "monitoring_proxy/etcd_client.hpp"

namespace monitoring_proxy::etcd {

struct Connection {
    Endpoint endpoint;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

struct Client::Impl {
    ClientOptions options;
    std::vector<Connection> connections;
    std::atomic<std::size_t> current{0};
};

// A status that means "this endpoint is not answering": try the next one.
inline bool endpoint_unreachable(const grpc::Status& s) {
    return s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::string status_text(const grpc::Status& s);
KeyValue to_key_value(const mvccpb::KeyValue& kv);

}  // namespace monitoring_proxy::etcd
