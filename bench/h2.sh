#!/bin/sh
# HTTP/2 benchmark: pylon vs nginx vs HAProxy as h2c (prior knowledge) front
# ends proxying to the same HTTP/1.1 backend.
#   sh bench/h2.sh [PYLON_BIN]
#
# Setup (127.0.0.1, free ports, configs in a temp dir): backend nginx with 2
# workers answering a fixed 64-byte body; proxies with one worker/thread each:
# pylon run --workers 1 (h2c detected on its HTTP listener), nginx
# "listen ... http2" with upstream keepalive, HAProxy "bind ... proto h2" with
# http-reuse always. Load: h2load, $CONNS connections x $STREAMS concurrent
# streams for $DURATION after a 2 s warm-up, one proxy at a time.
# Reported: requests/s, proxy CPU seconds (utime+stime of the proxy's
# processes), requests per proxy CPU-second, and the ratio to nginx.
set -eu

PYLON=${1:-build/pylon}
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
STREAMS=${STREAMS:-16}

. "$(dirname "$0")/lib.sh"
bench_init h2bench nginx haproxy h2load curl python3

wait_h2() { wait_up "$1" "$2" --http2-prior-knowledge; }

BACKEND=$(free_port)
P_PYLON=$(free_port)
P_NGINX=$(free_port)
P_HAPROXY=$(free_port)
ADMIN=$(free_port)

start_backend "$TMP/backend" "$BACKEND"

start_pylon "$TMP/pylon" "$P_PYLON" "$BACKEND" "$ADMIN"
PYLON_PID=$PYLON_STARTED
PIDS="$PIDS $PYLON_PID"

nginx_conf "$TMP/proxy" 1 "upstream be { server 127.0.0.1:$BACKEND; keepalive 64; }
	server { listen 127.0.0.1:$P_NGINX http2; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$TMP/proxy/nginx.conf" -p "$TMP/proxy" -g 'daemon off;' &
NGINX_PID=$!
PIDS="$PIDS $NGINX_PID"

cat >"$TMP/haproxy.cfg" <<EOF
global
	nbthread 1
	maxconn 4000
defaults
	mode http
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	http-reuse always
frontend fe
	bind 127.0.0.1:$P_HAPROXY proto h2
	default_backend be
backend be
	server s1 127.0.0.1:$BACKEND
EOF
haproxy -f "$TMP/haproxy.cfg" -db 2>"$TMP/haproxy.log" &
HAPROXY_PID=$!
PIDS="$PIDS $HAPROXY_PID"

wait_h2 "http://127.0.0.1:$P_PYLON/" pylon
wait_h2 "http://127.0.0.1:$P_NGINX/" nginx
wait_h2 "http://127.0.0.1:$P_HAPROXY/" haproxy

HZ=$(getconf CLK_TCK)
printf '%-8s %12s %10s %16s %10s\n' proxy "req/s" "cpu s" "req/cpu-s" "vs nginx"
NGINX_EFF=""
for name in nginx pylon haproxy; do
	case $name in
	pylon) port=$P_PYLON pid=$PYLON_PID ;;
	nginx) port=$P_NGINX pid=$NGINX_PID ;;
	haproxy) port=$P_HAPROXY pid=$HAPROXY_PID ;;
	esac
	h2load -c "$CONNS" -m "$STREAMS" -D 2 "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
	t0=$(cpu_ticks "$pid")
	out=$(h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" "http://127.0.0.1:$port/" 2>&1)
	t1=$(cpu_ticks "$pid")
	done_n=$(echo "$out" | awk '/^requests:/ {print $8}')
	ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
	rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
	cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
	eff=$(awk -v n="$ok" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f", n / c; else print 0}')
	[ "$name" = nginx ] && NGINX_EFF=$eff
	ratio=$(awk -v e="$eff" -v n="$NGINX_EFF" 'BEGIN {if (n > 0) printf "%.2f", e / n; else print "-"}')
	printf '%-8s %12s %10s %16s %10s   (%s of %s requests 2xx)\n' "$name" "$rps" "$cpu" "$eff" "$ratio" "$ok" "$done_n"
done
