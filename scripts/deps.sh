# Sourced by the scripts: system packages the build needs. protoc builds
# etcd's gRPC client (the jepsen crate's `bench etcd`); without root it can
# only say what to install.
if ! command -v protoc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing protobuf-compiler (protoc, needed to build the jepsen crate)"
    apt-get install -y protobuf-compiler >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y protobuf-compiler >/dev/null; }
  else
    echo "protoc is missing: install Debian's protobuf-compiler (sudo apt-get install protobuf-compiler)" >&2
    exit 2
  fi
fi
