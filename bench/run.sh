#!/bin/sh
# Side-by-side benchmark: pylon vs nginx vs HAProxy as reverse proxies.
#   sh bench/run.sh [PYLON_BIN]        (make bench)
#
# Setup (everything on 127.0.0.1, ports picked free, configs in a temp dir):
#   backend  nginx serving a fixed 64-byte response ("return 200"), 2 workers:
#            cheap enough that it is not what is measured, and the same for all
#   proxies  pylon run --workers 1; nginx with 1 worker (upstream keepalive);
#            HAProxy with nbthread 1 (http-reuse always). Each proxies every
#            request to the backend over pooled keep-alive connections.
#   load     wrk, keep-alive, $THREADS threads, $CONNS connections, $DURATION,
#            after a 2 s warm-up, one proxy at a time.
# Reported per proxy: requests/s, the proxy's own CPU seconds during the run
# (utime+stime of all its processes from /proc/PID/stat), requests per proxy
# CPU-second (the number that matters on a shared machine: wrk and the backend
# take CPU too), p50/p99 latency, and the ratios to nginx.
# Then the same for HTTPS (ECDSA P-256 and RSA-2048): keep-alive requests and new handshakes per
# proxy CPU-second (NO_TLS=1 skips it). Not part of `make test`; about 2 minutes.
set -eu

PYLON=${1:-build/pylon}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}

. "$(dirname "$0")/lib.sh"
bench_init bench nginx haproxy wrk curl python3

wait_http() { wait_up "$1" "$2"; }

BACKEND=$(free_port)
P_PYLON=$(free_port)
P_NGINX=$(free_port)
P_HAPROXY=$(free_port)
ADMIN=$(free_port)

start_backend "$TMP/backend" "$BACKEND"
wait_http "http://127.0.0.1:$BACKEND/" "backend nginx"

start_pylon "$TMP/pylon" "$P_PYLON" "$BACKEND" "$ADMIN"
PID_PYLON=$PYLON_STARTED
PIDS="$PIDS $PID_PYLON"

nginx_conf "$TMP/nginx" 1 "upstream be { server 127.0.0.1:$BACKEND; keepalive 64; }
	server { listen 127.0.0.1:$P_NGINX; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' &
PID_NGINX=$!
PIDS="$PIDS $PID_NGINX"

cat >"$TMP/haproxy.cfg" <<EOF
global
	nbthread 1
	maxconn 4096
defaults
	mode http
	option http-keep-alive
	http-reuse always
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend fe
	bind 127.0.0.1:$P_HAPROXY
	default_backend be
backend be
	server s1 127.0.0.1:$BACKEND
EOF
haproxy -f "$TMP/haproxy.cfg" -db 2>"$TMP/haproxy.log" &
PID_HAPROXY=$!
PIDS="$PIDS $PID_HAPROXY"

wait_http "http://127.0.0.1:$P_PYLON/" "pylon (log: $(cat "$TMP/pylon.log" 2>/dev/null | tail -5))"
wait_http "http://127.0.0.1:$P_NGINX/" "nginx"
wait_http "http://127.0.0.1:$P_HAPROXY/" "haproxy"

HZ=$(getconf CLK_TCK)
echo "bench: wrk -t$THREADS -c$CONNS -d$DURATION, keep-alive, one proxy worker each, backend nginx:$BACKEND"
printf '%-8s %10s %8s %12s %9s %9s %10s\n' proxy req/s cpu_s req/cpu_s p50 p99 vs_nginx
RESULTS="$TMP/results"
: >"$RESULTS"
for name in nginx pylon haproxy; do
	eval "port=\$P_$(echo $name | tr a-z A-Z)"
	eval "pid=\$PID_$(echo $name | tr a-z A-Z)"
	url="http://127.0.0.1:$port/"
	wrk -t"$THREADS" -c"$CONNS" -d2s "$url" >/dev/null 2>&1
	before=$(cpu_ticks "$pid")
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url" >"$TMP/wrk-$name.txt" 2>&1
	after=$(cpu_ticks "$pid")
	awk -v name="$name" -v ticks=$((after - before)) -v hz="$HZ" '
		/Requests\/sec:/ { rps = $2 }
		/^ +50%/ { p50 = $2 }
		/^ +99%/ { p99 = $2 }
		/requests in/ { reqs = $1 }
		/Non-2xx or 3xx/ { bad = $NF }
		END {
			cpu = ticks / hz
			per = cpu > 0 ? reqs / cpu : 0
			printf "%s %s %.2f %.0f %s %s %s\n", name, rps, cpu, per, p50, p99, bad + 0
		}' "$TMP/wrk-$name.txt" >>"$RESULTS"
done

awk '
	{ n[NR] = $1; rps[NR] = $2; cpu[NR] = $3; per[NR] = $4; p50[NR] = $5; p99[NR] = $6; bad[NR] = $7 }
	$1 == "nginx" { base = $4 }
	END {
		for (i = 1; i <= NR; i++) {
			ratio = base > 0 ? per[i] / base : 0
			printf "%-8s %10.0f %8.2f %12.0f %9s %9s %9.2fx", n[i], rps[i], cpu[i], per[i], p50[i], p99[i], ratio
			if (bad[i] > 0)
				printf "   (%d non-2xx responses!)", bad[i]
			printf "\n"
		}
	}' "$RESULTS"
echo "req/cpu_s = requests per CPU-second of the proxy itself; vs_nginx compares that number."

# ---- TLS (issue 5): HTTPS keep-alive requests and new handshakes per proxy CPU-second, ECDSA P-256 and
# RSA-2048 certificates, TLS 1.3 (whatever wrk's OpenSSL negotiates; the same for all three proxies).
# "handshakes" runs wrk with "Connection: close": every request is a new TCP connection and a full
# handshake (wrk does not resume sessions), so req/cpu_s there is handshakes per CPU-second.
[ -n "${NO_TLS:-}" ] && exit 0
TLS_DURATION=${TLS_DURATION:-5s}
for kt in ec rsa; do
	if [ $kt = ec ]; then ka="ec -pkeyopt ec_paramgen_curve:P-256"; else ka="rsa:2048"; fi
	# shellcheck disable=SC2086
	openssl req -x509 -newkey $ka -nodes -keyout "$TMP/$kt.key" -out "$TMP/$kt.crt" -subj /CN=bench.example.com \
		-days 2 -addext subjectAltName=DNS:bench.example.com >/dev/null 2>&1
	cat "$TMP/$kt.crt" "$TMP/$kt.key" >"$TMP/$kt.pem"
done
b64() { base64 -w0 "$1"; }
wait_https() { wait_up "$1" "$2" -k; }
T_PYLON_EC=$(free_port); T_PYLON_RSA=$(free_port); T_NGINX_EC=$(free_port); T_NGINX_RSA=$(free_port)
T_HAPROXY_EC=$(free_port); T_HAPROXY_RSA=$(free_port); ADMIN2=$(free_port)
mkdir -p "$TMP/pylon-tls"
sed -e "s/listeners: \[{name: http, protocol: HTTP, port: $P_PYLON}\]/listeners: [{name: ec, protocol: HTTPS, port: $T_PYLON_EC, tls: {certificateRefs: [{name: ec}]}}, {name: rsa, protocol: HTTPS, port: $T_PYLON_RSA, tls: {certificateRefs: [{name: rsa}]}}]/" \
	"$TMP/pylon/bench.yaml" >"$TMP/pylon-tls/bench.yaml"
for kt in ec rsa; do
	printf '%s\n' '---' >>"$TMP/pylon-tls/bench.yaml"
	printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\ntype: kubernetes.io/tls\ndata: {tls.crt: %s, tls.key: %s}\n' \
		"$kt" "$(b64 "$TMP/$kt.crt")" "$(b64 "$TMP/$kt.key")" >>"$TMP/pylon-tls/bench.yaml"
done
"$PYLON" run --manifests "$TMP/pylon-tls" --workers 1 --admin "127.0.0.1:$ADMIN2" --log-level warn \
	2>"$TMP/pylon-tls.log" &
PID_TPYLON=$!
PIDS="$PIDS $PID_TPYLON"
nginx_conf "$TMP/nginx-tls" 1 "upstream be { server 127.0.0.1:$BACKEND; keepalive 64; }
	ssl_protocols TLSv1.2 TLSv1.3;
	server { listen 127.0.0.1:$T_NGINX_EC ssl; ssl_certificate $TMP/ec.crt; ssl_certificate_key $TMP/ec.key;
		location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
	server { listen 127.0.0.1:$T_NGINX_RSA ssl; ssl_certificate $TMP/rsa.crt; ssl_certificate_key $TMP/rsa.key;
		location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$TMP/nginx-tls/nginx.conf" -p "$TMP/nginx-tls" -g 'daemon off;' &
PID_TNGINX=$!
PIDS="$PIDS $PID_TNGINX"
sed -e "s|bind 127.0.0.1:$P_HAPROXY|bind 127.0.0.1:$T_HAPROXY_EC ssl crt $TMP/ec.pem\n\tbind 127.0.0.1:$T_HAPROXY_RSA ssl crt $TMP/rsa.pem|" \
	"$TMP/haproxy.cfg" >"$TMP/haproxy-tls.cfg"
haproxy -f "$TMP/haproxy-tls.cfg" -db 2>"$TMP/haproxy-tls.log" &
PID_THAPROXY=$!
PIDS="$PIDS $PID_THAPROXY"
for u in "$T_PYLON_EC" "$T_PYLON_RSA" "$T_NGINX_EC" "$T_NGINX_RSA" "$T_HAPROXY_EC" "$T_HAPROXY_RSA"; do
	wait_https "https://127.0.0.1:$u/" "TLS proxy on $u (pylon log: $(tail -3 "$TMP/pylon-tls.log" 2>/dev/null))"
done

echo
echo "bench TLS: wrk -t$THREADS -c$CONNS -d$TLS_DURATION; keep-alive = requests on open TLS connections,"
echo "           handshakes = Connection: close (one full handshake per request)"
printf '%-22s %10s %8s %12s %10s\n' case req/s cpu_s req/cpu_s vs_nginx
TRES="$TMP/tls-results"
: >"$TRES"
for kt in ec rsa; do
	for mode in keepalive handshakes; do
		for name in nginx pylon haproxy; do
			KT=$(echo $kt | tr a-z A-Z)
			eval "port=\$T_$(echo $name | tr a-z A-Z)_$KT"
			eval "pid=\$PID_T$(echo $name | tr a-z A-Z)"
			hdr=""
			[ $mode = handshakes ] && hdr="Connection: close"
			url="https://127.0.0.1:$port/"
			wrk -t"$THREADS" -c"$CONNS" -d1s ${hdr:+-H "$hdr"} "$url" >/dev/null 2>&1
			before=$(cpu_ticks "$pid")
			wrk -t"$THREADS" -c"$CONNS" -d"$TLS_DURATION" ${hdr:+-H "$hdr"} "$url" >"$TMP/wrk-tls.txt" 2>&1
			after=$(cpu_ticks "$pid")
			awk -v c="$kt-$mode" -v name="$name" -v ticks=$((after - before)) -v hz="$HZ" '
				/Requests\/sec:/ { rps = $2 }
				/requests in/ { reqs = $1 }
				END { cpu = ticks / hz; printf "%s %s %s %.2f %.0f\n", c, name, rps, cpu, (cpu > 0 ? reqs / cpu : 0) }' \
				"$TMP/wrk-tls.txt" >>"$TRES"
		done
	done
done
awk '
	{ c[NR] = $1; n[NR] = $2; rps[NR] = $3; cpu[NR] = $4; per[NR] = $5 }
	$2 == "nginx" { base[$1] = $5 }
	END {
		for (i = 1; i <= NR; i++)
			printf "%-22s %10.0f %8.2f %12.0f %9.2fx\n", c[i] " " n[i], rps[i], cpu[i], per[i],
				(base[c[i]] > 0 ? per[i] / base[c[i]] : 0)
	}' "$TRES"
