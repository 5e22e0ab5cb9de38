#!/bin/sh
# Installs what pylon's build, tests and benchmarks need, from Debian packages
# and PyPI, only when something is missing. Safe to run repeatedly.
set -eu
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in build-essential cmake ninja-build pkg-config libev-dev libssl-dev node-llhttp libnghttp2-dev \
         libyaml-dev libjansson-dev libcurl4-openssl-dev curl openssl nghttp2-client clang \
         libclang-rt-14-dev nginx-light haproxy wrk python3 python3-pytest procps iproute2; do
	have_pkg "$p" || need="$need $p"
done
if [ -n "$need" ]; then
	echo "deps: installing:$need"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# python3 on PATH may be another interpreter than Debian's (pyenv): make sure it has
# pytest, PyYAML and h2 (the HTTP/2 client of the WebSocket-over-HTTP/2 tests),
# as module:package pairs.
for mp in pytest:pytest yaml:pyyaml h2:h2; do
	if ! python3 -c "import ${mp%%:*}" 2>/dev/null; then
		echo "deps: installing ${mp#*:} for $(command -v python3)"
		python3 -m pip install -q "${mp#*:}"
	fi
done
