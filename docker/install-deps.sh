#!/usr/bin/env bash
# The one list of Debian packages this project needs. README, .ci/run and the Dockerfile all call this script,
# so the three can never disagree.
#
#   install-deps.sh build    compilers and -dev libraries
#   install-deps.sh test     build + the real programs the tests drive
#   install-deps.sh runtime  what the image needs to run (no compilers)
set -euo pipefail

build=(
  g++ cmake make pkg-config ca-certificates
  nginx nginx-dev            # the module is built against Debian's nginx sources (--with-compat) and loaded by it
  libssh-dev                 # tunneld's SSH server
  libssl-dev                 # SHA-256 of join tokens (libcrypto; libssh links it already)
  liblmdb-dev lmdb-utils     # the registry; mdb_stat for inspection
  catch2                     # unit tests (v2, prebuilt Catch2WithMain)
  dpkg-dev file              # the Debian packages (CPack): dpkg-shlibdeps, and file to find the ELF files
  # cluster mode (MP_CLUSTER, default ON): etcd 3.4's native gRPC API, since lease keepalive and watch are
  # streams; stubs are generated at build time from the protos golang-etcd-server-dev ships
  libgrpc++-dev protobuf-compiler-grpc golang-etcd-server-dev
)
test=(
  openssh-client openssh-server  # real ssh -R clients; sshd for the original stack in benchmarks
  dropbear-bin putty-tools autossh
  prometheus prometheus-node-exporter
  etcd-server etcd-client    # cluster tests: a real 3-member etcd 3.4 cluster; etcdctl writes hostile values
  curl wrk procps iproute2 psmisc
  shellcheck                 # the image's entrypoint is checked by it
  clang libclang-rt-14-dev   # libFuzzer targets (tests/fuzz)
  python3 python3-pytest python3-paramiko  # paramiko: hand-made SSH requests in the hostile suite
  chromium                   # the status page, rendered headless in tests
  mmdebstrap lintian systemd # the .debs installed into a fresh bookworm root, linted, their unit verified
  # the image built and run for real (tests/e2e/test_image.py): podman rootful with runc (crun refuses hybrid
  # cgroup hosts), CNI networking for published ports; its base images are made by mmdebstrap too
  podman runc containernetworking-plugins iptables
)

want=()
case "${1:-test}" in
  build) want=("${build[@]}") ;;
  test) want=("${build[@]}" "${test[@]}") ;;
  # runtime: the shared libraries of tunneld, tunnelctl and the module (gRPC/protobuf/abseil: the etcd client of
  # cluster mode, linked in whether or not --etcd is used), nginx, and ssh-keygen for the entrypoint.
  runtime) want=(nginx libssh-4 liblmdb0 libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623
                 openssh-client ca-certificates) ;;
  *) echo "usage: $0 build|test|runtime" >&2; exit 1 ;;
esac

export DEBIAN_FRONTEND=noninteractive
# Skip apt entirely when everything is present: keeps repeated runs fast and offline-safe.
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
