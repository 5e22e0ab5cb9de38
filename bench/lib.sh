# Shared by bench/run.sh and bench/h2.sh (sourced; POSIX sh).

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
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
