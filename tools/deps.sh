#!/bin/sh
# Installs the Debian packages gort builds, tests and benchmarks with.
# Called by `make deps`; runs apt-get only for packages that are missing,
# and `apt-get update` once, only when something is missing.
set -e
PKGS="g++ make pkg-config cmake libboost-test-dev libbenchmark-dev \
      libjemalloc2 libjemalloc-dev libmimalloc2.0 libmimalloc-dev \
      libgoogle-perftools4 libgoogle-perftools-dev valgrind \
      python3 python3-matplotlib git procps coreutils \
      golang-go libboost-fiber-dev libboost-context-dev libgc-dev wrk"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends $missing || {
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends $missing
}
