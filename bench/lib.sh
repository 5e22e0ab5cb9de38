# Shared by bench/run.sh and bench/h2.sh (sourced; POSIX sh).

# bench_init NAME TOOL...: checks the tools and $PYLON (made absolute), makes $TMP
# (/tmp/pylon-NAME.XXXXXX) and kills $PIDS and removes $TMP (unless KEEP is set) on exit.
bench_init() {
	name=$1; shift
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (make deps)" >&2; exit 2; }
	done
	[ -x "$PYLON" ] || { echo "bench: $PYLON not executable (make build)" >&2; exit 2; }
	PYLON=$(cd "$(dirname "$PYLON")" && pwd)/$(basename "$PYLON")
	TMP=$(mktemp -d "/tmp/pylon-$name.XXXXXX")
	PIDS=""
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
	for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] || rm -rf "$TMP"
}

# wait_up URL WHAT [CURL_OPTION...]: until curl gets a 2xx from URL (10 s at most).
wait_up() {
	url=$1 what=$2; shift 2
	i=0
	until curl -fs "$@" -o /dev/null "$url"; do
		i=$((i + 1))
		[ $i -gt 100 ] && { echo "bench: $what did not answer on $url" >&2; exit 1; }
		sleep 0.1
	done
}

# free_port: a port nobody listens on, never one this run handed out before
# (the kernel may return a just-closed port again); the record is $TMP/ports.
free_port() {
	python3 - "$TMP/ports" <<'PY'
import socket, sys
given = set(open(sys.argv[1]).read().split()) if __import__("os").path.exists(sys.argv[1]) else set()
while True:
    s = socket.socket(); s.bind(("0.0.0.0", 0)); p = str(s.getsockname()[1]); s.close()
    if p not in given:
        break
open(sys.argv[1], "a").write(p + "\n")
print(p)
PY
}

# CPU clock ticks (utime+stime) of a process and its direct children (nginx workers).
cpu_ticks() {
	{ echo "$1"; pgrep -P "$1" || true; } | while read -r pid; do
		[ -r "/proc/$pid/stat" ] && sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'
	done | awk '{s += $1} END {print s + 0}'
}

nginx_conf() { # $1 dir, $2 workers, $3 server block
	mkdir -p "$1"
	cat >"$1/nginx.conf" <<EOF
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $1/body;
	proxy_temp_path $1/proxy;
	fastcgi_temp_path $1/fastcgi;
	uwsgi_temp_path $1/uwsgi;
	scgi_temp_path $1/scgi;
	keepalive_requests 1000000;
	$3
}
EOF
}

# The backend every proxy fronts: nginx, 2 workers, a fixed 64-byte body.
start_backend() { # $1 dir, $2 port
	nginx_conf "$1" 2 "server { listen 127.0.0.1:$2; location / { return 200 'pylon-bench backend: a small fixed response body of 64 bytes!!\n'; } }"
	nginx -c "$1/nginx.conf" -p "$1" -g 'daemon off;' &
	PIDS="$PIDS $!"
}

# pylon with one route to the backend: $1 dir, $2 listener port, $3 backend port, $4 admin port.
# Sets PYLON_STARTED to its pid (the caller adds it to PIDS); the log goes to $1.log.
start_pylon() {
	mkdir -p "$1"
	cat >"$1/bench.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pylon}
spec: {controllerName: pylon.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  gatewayClassName: pylon
  listeners: [{name: http, protocol: HTTP, port: $2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $3}]
endpoints: [{addresses: [127.0.0.1]}]
EOF
	"$PYLON" run --manifests "$1" --workers 1 --admin "127.0.0.1:$4" --log-level warn 2>"$1.log" &
	PYLON_STARTED=$!
}
