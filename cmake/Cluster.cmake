# What MP_CLUSTER needs, each missing piece a configure error naming its Debian package and the way out.
function(mp_cluster_require found what package)
  if(NOT ${found})
    message(FATAL_ERROR "MP_CLUSTER=ON (cluster mode on etcd) needs ${what}: apt-get install ${package} "
                        "(docker/install-deps.sh build), or configure with -DMP_CLUSTER=OFF for a build "
                        "without cluster support")
  endif()
endfunction()

pkg_check_modules(GRPCXX IMPORTED_TARGET grpc++)
mp_cluster_require(GRPCXX_FOUND "the gRPC C++ library (pkg-config grpc++)" libgrpc++-dev)
pkg_check_modules(PROTOBUF IMPORTED_TARGET protobuf)
mp_cluster_require(PROTOBUF_FOUND "the protobuf library (pkg-config protobuf)" libprotobuf-dev)
find_program(MP_PROTOC protoc)
mp_cluster_require(MP_PROTOC "protoc" protobuf-compiler)
find_program(MP_GRPC_CPP_PLUGIN grpc_cpp_plugin)
mp_cluster_require(MP_GRPC_CPP_PLUGIN "grpc_cpp_plugin" protobuf-compiler-grpc)
set(MP_ETCD_PROTO_DIR /usr/share/gocode/src/go.etcd.io/etcd CACHE PATH
    "etcd 3.4 sources holding etcdserver/etcdserverpb/rpc.proto, mvcc/mvccpb/kv.proto, auth/authpb/auth.proto")
if(EXISTS ${MP_ETCD_PROTO_DIR}/etcdserver/etcdserverpb/rpc.proto AND EXISTS ${MP_ETCD_PROTO_DIR}/mvcc/mvccpb/kv.proto
   AND EXISTS ${MP_ETCD_PROTO_DIR}/auth/authpb/auth.proto)
  set(MP_ETCD_PROTOS_FOUND TRUE)
endif()
mp_cluster_require(MP_ETCD_PROTOS_FOUND "etcd's protos in ${MP_ETCD_PROTO_DIR} (-DMP_ETCD_PROTO_DIR=...)"
                   golang-etcd-server-dev)
