/*
 * The compiled routing table: the only thing proxy/ and controller/ share.
 *
 * Contract
 * - The controller builds a table in its own arena (table->arena), validates it
 *   completely, then hands it to pl_table_publish() (table.h). From then on the
 *   table is immutable, except for the fields explicitly marked "mutable" below
 *   (atomic counters used for round-robin), which any worker thread may update
 *   with relaxed atomics.
 * - Every pointer inside a table points into the same arena, into a
 *   pl_stats object (stats.h) that outlives all tables, or into immutable
 *   blocks the controller shares between tables (parsed route rules,
 *   endpoint lists) that the arena keeps alive: an arena cleanup releases
 *   them. A table is freed in one call (pl_table_unref dropping the last
 *   reference), on any thread.
 * - Strings are NUL-terminated; *_len fields, where present, equal strlen().
 * - Header names in matches and filters are stored lower-cased; comparisons
 *   with request header names are case-insensitive, values case-sensitive.
 *
 * Request lookup (proxy/router.c implements it, controller/compile.c orders it):
 *   bind (address:port)  -> listeners, most specific hostname first
 *   listener             -> vhosts, most specific hostname first
 *   vhost                -> entries, already sorted in Gateway API precedence
 *                           order: the first entry whose match holds wins.
 */
#ifndef PL_TABLE_T_H
#define PL_TABLE_T_H

#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

struct pl_route_stats;

enum pl_proto {
	PL_PROTO_HTTP = 0,
	PL_PROTO_HTTPS,   /* TLS terminated, then HTTP (listener->tls) */
	PL_PROTO_TLS,     /* TLS listener: passthrough by SNI, or terminate (listener->tls->mode) */
	PL_PROTO_TCP,
	PL_PROTO_UDP,
};

/* Host names: "" or "*" = any host; "*.example.com" = wildcard; else exact. */
enum pl_host_kind { PL_HOST_ANY = 0, PL_HOST_WILDCARD, PL_HOST_EXACT };

struct pl_hostname {
	enum pl_host_kind kind;
	char *name;          /* lower-case; for WILDCARD the suffix incl. the dot: ".example.com" */
	uint32_t name_len;
};

enum pl_path_match { PL_PATH_PREFIX = 0, PL_PATH_EXACT, PL_PATH_REGEX };
enum pl_str_match { PL_MATCH_EXACT = 0, PL_MATCH_REGEX };

struct pl_kv_match {
	enum pl_str_match type;
	char *name;          /* headers: lower-case; query params: exact case */
	char *value;
	regex_t *re;         /* type == PL_MATCH_REGEX: compiled POSIX ERE, anchored by the compiler */
};

struct pl_match {
	enum pl_path_match path_type;
	char *path;          /* PREFIX: normalised, no trailing '/' except "/" itself */
	uint32_t path_len;
	regex_t *path_re;    /* PL_PATH_REGEX */
	char *method;        /* NULL: any method */
	struct pl_kv_match *headers;
	uint32_t n_headers;
	struct pl_kv_match *queries;
	uint32_t n_queries;
};

struct pl_kv {
	char *name;          /* lower-case for header filters */
	char *value;
	uint32_t name_len, value_len;
};

struct pl_header_mod {
	struct pl_kv *set;
	uint32_t n_set;
	struct pl_kv *add;
	uint32_t n_add;
	char **remove;       /* lower-case names */
	uint32_t n_remove;
};

enum pl_path_mod_type { PL_PATHMOD_NONE = 0, PL_PATHMOD_FULL, PL_PATHMOD_PREFIX };

struct pl_path_mod {
	enum pl_path_mod_type type;
	char *value;         /* FULL: replacement path; PREFIX: replacement for the matched prefix */
};

struct pl_redirect {
	char *scheme;        /* NULL: keep request scheme */
	char *hostname;      /* NULL: keep request host (without port) */
	int port;            /* 0: derive as the spec says (scheme default / listener port) */
	struct pl_path_mod path;
	int status_code;     /* 301 or 302 (302 default) */
};

struct pl_rewrite {
	char *hostname;      /* NULL: keep */
	struct pl_path_mod path;
};

struct pl_cluster;

struct pl_mirror {
	struct pl_cluster *cluster;  /* NULL: invalid ref, mirror skipped */
	uint32_t percent_num;        /* mirror percent_num/percent_den of requests; 1/1 = all */
	uint32_t percent_den;
};

enum pl_filter_type {
	PL_FILTER_REQUEST_HEADER = 0,
	PL_FILTER_RESPONSE_HEADER,
	PL_FILTER_REDIRECT,
	PL_FILTER_REWRITE,
	PL_FILTER_MIRROR,
	PL_FILTER_CORS,      /* added (CORS): HTTPRoute rule filters only */
};

/*
 * Added (CORS): one allowOrigins entry other than "*". Scheme and host are
 * compared case-insensitively, ports numerically (the scheme's default when
 * the entry or the request's Origin names none).
 */
struct pl_cors_origin {
	char *text;                  /* as configured, for dumps */
	uint8_t https;               /* scheme https, else http */
	uint16_t port;               /* explicit, else 80 / 443 */
	struct pl_hostname host;     /* ANY: host "*"; WILDCARD: "*.example.com"; EXACT */
};

/*
 * Added (CORS): an HTTPCORSFilter, decided by proxy/cors.h. List values are
 * joined with ", " as sent; NULL when the list is empty.
 */
struct pl_cors {
	struct pl_cors_origin *origins;
	uint32_t n_origins;
	uint8_t any_origin;          /* allowOrigins is ["*"] */
	uint8_t credentials;         /* allowCredentials: true */
	uint8_t any_method;          /* allowMethods is ["*"]: echo Access-Control-Request-Method */
	uint8_t any_header;          /* allowHeaders is ["*"]: echo Access-Control-Request-Headers */
	uint8_t any_expose;          /* exposeHeaders holds "*" (sent only without credentials) */
	char *allow_methods;         /* NULL with any_method */
	char *allow_headers;         /* NULL with any_header */
	char *expose_headers;        /* the names other than "*" */
	uint32_t max_age;            /* seconds; 5 when not configured */
};

struct pl_filter {
	enum pl_filter_type type;
	union {
		struct pl_header_mod hdr;    /* REQUEST_HEADER, RESPONSE_HEADER */
		struct pl_redirect redirect;
		struct pl_rewrite rewrite;
		struct pl_mirror mirror;
		struct pl_cors cors;         /* added (CORS) */
	} u;
};

enum pl_app_proto { PL_APP_HTTP1 = 0, PL_APP_H2C, PL_APP_WS, PL_APP_TLS };

struct pl_endpoint {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *text;          /* "10.0.0.1:8080" for logs */
	int ready;           /* EndpointSlice conditions.ready (absent = ready) */
};

/*
 * A backend destination: one Service port and its endpoints. id is stable
 * across tables for the same "namespace/name:port" so per-backend state kept
 * by the proxy (pools, health) survives swaps.
 */
/*
 * BackendTLSPolicy applied to a cluster (issue 5): connect with TLS, send
 * sni, verify the chain against ca_pem (NULL: the system store) and the
 * name against sans (or, when n_sans == 0, against sni).
 */
struct pl_backend_tls {
	char *sni;
	char *ca_pem;        /* NULL: system trust store */
	char **sans;         /* DNS names / URIs the certificate must carry one of */
	uint32_t n_sans;
	char *policy;        /* "namespace/name" of the BackendTLSPolicy, for logs */
	uint64_t fingerprint;
	/*
	 * Non-NULL: the policy applies but is unusable (no valid CA certificate,
	 * invalid hostname): every connection to the cluster fails (closed),
	 * never falls back to plaintext. sans entries holding ':' are URIs,
	 * the others DNS names.
	 */
	char *error;
	/*
	 * Added (issue 5): the Gateway's spec.tls.backend.clientCertificateRef,
	 * NUL-terminated PEM (certificate then chain; its key), presented to the
	 * backend; NULL: none. Included in fingerprint.
	 */
	char *client_cert_pem;
	char *client_key_pem;
};

struct pl_cluster {
	uint32_t id;
	char *name;          /* "namespace/service:port" */
	enum pl_app_proto app_proto;
	struct pl_endpoint *eps;
	uint32_t n_eps;
	atomic_uint rr;      /* mutable: endpoint round-robin cursor */
	struct pl_backend_tls *tls;      /* added (issue 5): NULL = plaintext */
};

struct pl_backend {
	struct pl_cluster *cluster;  /* NULL: invalid backendRef: its share of requests gets 500 */
	uint32_t weight;
	struct pl_filter *filters;   /* per-backendRef filters, applied after the rule's */
	uint32_t n_filters;
};

/*
 * Added (retry): an HTTPRoute rule's retry stanza (HTTPRouteRetry), decided
 * by proxy/retry.h. codes: one bit per status PL_RETRY_CODE_MIN..MAX, bit
 * (status - PL_RETRY_CODE_MIN) of codes[k / 64]; none set: only connection
 * errors are retried.
 */
#define PL_RETRY_CODE_MIN 400
#define PL_RETRY_CODE_MAX 599

struct pl_retry {
	uint64_t codes[4];
	uint32_t attempts;           /* retries after the first try, >= 1 (1 when not configured) */
	uint64_t backoff_ms;         /* before the first retry, doubling after (25 when not configured) */
};

struct pl_rule {
	char *route;         /* "HTTPRoute/namespace/name" */
	uint32_t rule_index;
	struct pl_route_stats *stats;
	struct pl_filter *filters;
	uint32_t n_filters;
	struct pl_backend *backends;
	uint32_t n_backends;
	/*
	 * Smooth weighted round-robin order, precomputed by the compiler
	 * (nginx's algorithm), indices into backends[]; weights of 0 never appear.
	 * n_schedule == 0 and no redirect filter: respond 500 (no valid backend).
	 */
	uint16_t *schedule;
	uint32_t n_schedule;
	atomic_uint sched_pos;       /* mutable: cursor into schedule */
	uint64_t timeout_request_ms; /* 0: none. timeouts.request */
	uint64_t timeout_backend_ms; /* 0: none. timeouts.backendRequest */
	const struct pl_retry *retry;    /* added (retry): NULL: no retry stanza */
	/*
	 * Added (issue 4), for dumps (GET /config): the rule's matches (route
	 * entries hold copies of them, same pointers inside). A rule may be
	 * shared by several tables.
	 */
	const struct pl_match *matches;
	uint32_t n_matches;
};

struct pl_route_entry {
	struct pl_match match;
	struct pl_rule *rule;
};

struct pl_vhost {
	struct pl_hostname host;
	struct pl_route_entry *entries;  /* precedence order */
	uint32_t n_entries;
};

/*
 * TLS of a listener (HTTPS, TLS). PEM text only: the compiler stays free of
 * proxy types; the proxy builds (and caches, keyed by fingerprint) one
 * SSL_CTX per distinct material, see docs/tls.md.
 */
enum pl_tls_mode { PL_TLS_TERMINATE = 0, PL_TLS_PASSTHROUGH };

struct pl_tls_cert {
	char *cert_pem;      /* leaf first, then the chain; validated by the compiler */
	char *key_pem;
	uint32_t cert_len, key_len;
};

struct pl_listener_tls {
	enum pl_tls_mode mode;
	struct pl_tls_cert *certs;       /* TERMINATE: >= 1 (one per certificateRef that resolved) */
	uint32_t n_certs;
	char *client_ca_pem;             /* frontend client-certificate validation; NULL: none */
	int client_optional;             /* AllowInsecureFallback: a missing/invalid client cert is accepted */
	uint64_t fingerprint;            /* FNV-1a over all PEM bytes and flags: equal material, equal value */
};

struct pl_listener {
	char *name;          /* "namespace/gateway/listener" */
	enum pl_proto proto;
	struct pl_hostname host;
	struct pl_vhost *vhosts;         /* exact, then wildcard by suffix length desc, then any */
	uint32_t n_vhosts;
	/*
	 * Added for TLS/L4 (issue 5). NULL for HTTP, TCP, UDP. For TLS
	 * passthrough and TCP/UDP listeners the vhosts hold TLSRoute hostnames
	 * (or one "any" vhost) and each vhost's first entry (a PathPrefix "/"
	 * match) carries the route rule whose backends receive the stream.
	 */
	struct pl_listener_tls *tls;
	uint64_t idle_timeout_ms;        /* L4 streams/flows; 0: the proxy's default */
};

/* One listening socket: an address and port, and the listeners sharing it. */
struct pl_bind {
	char *address;       /* numeric IP; "0.0.0.0" when the Gateway gives none */
	uint16_t port;
	enum pl_proto proto;
	struct pl_listener *listeners;   /* most specific hostname first */
	uint32_t n_listeners;
};

struct pl_arena;

struct pl_table {
	atomic_int refcnt;
	uint64_t generation;
	int64_t compiled_at_ns;      /* pl_now_ns() when compilation finished */
	struct pl_bind *binds;
	uint32_t n_binds;
	struct pl_cluster **clusters;
	uint32_t n_clusters;
	/* changed (issue 4): every rule of the table, routes in (kind, namespace, name) order;
	 * replaces config_json: GET /config dumps the table on demand (tabledump.h).
	 * clusters are in the order the rules first name them. */
	struct pl_rule **rules;
	uint32_t n_rules;
	struct pl_arena *arena;      /* owns everything above, and the table itself */
};

#endif
