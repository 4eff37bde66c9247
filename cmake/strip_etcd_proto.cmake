# Copies one of etcd's .proto files with the gogoproto and google.api (grpc-gateway) options taken out: their
# imports are Go-only code generators' and the JSON gateway's, not needed for the wire. Only `import` lines of
# those two and their `option (...)` statements are removed; messages, field numbers and services (the wire
# contract) stay byte for byte. Run as: cmake -DIN=... -DOUT=... -P strip_etcd_proto.cmake
file(READ "${IN}" text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" text "${text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" text "${text}")
string(REGEX REPLACE "option \\(gogoproto\\.[a-z_]+\\) = [a-z]+;" "" text "${text}")
# rpc blocks: option (google.api.http) = { post: "/v3/..." body: "*" }; some hold one nested
# additional_bindings { ... } block.
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {([^{}]|{[^{}]*})*};" "" text "${text}")
# field options such as [(gogoproto.nullable) = false] (none in etcd 3.4's three files today; kept safe)
string(REGEX REPLACE " *\\[\\(gogoproto\\.[a-z_]+\\) = [a-z]+\\]" "" text "${text}")
if(text MATCHES "gogoproto|google\\.api")
  message(FATAL_ERROR "${IN}: gogoproto/google.api options left after stripping; extend cmake/strip_etcd_proto.cmake")
endif()
file(WRITE "${OUT}" "${text}")
