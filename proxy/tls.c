/*
 * TLS termination: SSL_CTX cache, handshakes, TLS I/O for the HTTP engine.
 * Design and lifetimes in tls.h and docs/tls.md.
 */
#include "pl.h"
#include "log.h"
#include "table.h"
#include "buf.h"
#include "http1.h"
#include "l4.h"
#include "passthrough.h"
#include "router.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <unistd.h>

int pl_tls_alpn_h2;

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are OpenSSL's defaults). */
#define TLS12_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
		      "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:P-256:P-384"

struct pl_tlsconn {
	SSL *ssl;
	uint8_t rd_wants_write;
	uint8_t failed;          /* fatal error seen: no close_notify */
	uint8_t h2;
	char sni[256];
};

/* ------------------------------------------------------------ context cache */

struct cent {
	unsigned char key[32];   /* SHA-256 of the material */
	SSL_CTX *ctx;
	unsigned users;          /* sets referring to it */
	struct cent *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cent *cache;
static SSL_CTX *base_ctx;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;

struct pl_tls_set {
	const struct pl_table *t;
	uint32_t *bind_off;      /* per bind: index of its first listener in ctx[] */
	SSL_CTX **ctx;           /* per listener; NULL unless TERMINATE with a built context */
	struct cent **ent;
	uint32_t n;
};

static void log_ssl_errors(const char *what)
{
	unsigned long e;
	char buf[256];
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		pl_warn("%s: %s", what, buf);
	}
}

struct pl_tlshs;
static int hs_idx = -1;
static const struct pl_listener *hs_listener(const struct pl_tlshs *h);

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	static const unsigned char h2_h1[] = "\x02h2\x08http/1.1";
	static const unsigned char h1[] = "\x08http/1.1";
	const unsigned char *ours = pl_tls_alpn_h2 ? h2_h1 : h1;
	unsigned ours_len = pl_tls_alpn_h2 ? sizeof(h2_h1) - 1 : sizeof(h1) - 1;
	unsigned char *sel;
	unsigned char sl;
	const struct pl_tlshs *h = hs_idx >= 0 ? SSL_get_ex_data(ssl, hs_idx) : NULL;
	const struct pl_listener *hl = h ? hs_listener(h) : NULL;
	if (hl && hl->proto == PL_PROTO_TLS)
		return SSL_TLSEXT_ERR_NOACK;   /* TLSRoute: opaque bytes, no application protocol to agree on */
	if (SSL_select_next_proto(&sel, &sl, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;   /* no common protocol: go on without ALPN (HTTP/1.1) */
	*out = sel;
	*outlen = sl;
	return SSL_TLSEXT_ERR_OK;
}

static int client_hello_cb(SSL *ssl, int *al, void *arg);

static void ctx_common(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
				 SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
	SSL_CTX_set1_groups_list(ctx, TLS_GROUPS);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_RELEASE_BUFFERS);
	/* stateless tickets only: no shared session cache to lock */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
}

static void do_init(void)
{
	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL) != 1) {
		log_ssl_errors("TLS init");
		return;
	}
	base_ctx = SSL_CTX_new(TLS_server_method());
	if (!base_ctx) {
		log_ssl_errors("TLS base context");
		return;
	}
	ctx_common(base_ctx);
	SSL_CTX_set_client_hello_cb(base_ctx, client_hello_cb, NULL);
	static const unsigned char sid[] = "pylon";
	SSL_CTX_set_session_id_context(base_ctx, sid, sizeof(sid) - 1);
	init_rc = 0;
}

int pl_tls_init(void)
{
	pthread_once(&init_once, do_init);
	return init_rc;
}

static int no_passphrase(char *buf, int size, int rw, void *u)
{
	return 0;
}

static SSL_CTX *ctx_build(const struct pl_listener *l, const unsigned char *key)
{
	const struct pl_listener_tls *lt = l->tls;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return NULL;
	ctx_common(ctx);
	SSL_CTX_set_session_id_context(ctx, key, 32);
	for (uint32_t i = 0; i < lt->n_certs; i++) {
		const struct pl_tls_cert *c = &lt->certs[i];
		BIO *b = BIO_new_mem_buf(c->cert_pem, (int)c->cert_len);
		X509 *x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
		int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
		X509_free(x);
		/* the rest of the PEM is the chain of this certificate */
		while (ok && b) {
			X509 *ch = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
			if (!ch)
				break;
			if (SSL_CTX_add0_chain_cert(ctx, ch) != 1) {
				X509_free(ch);
				ok = 0;
			}
		}
		ERR_clear_error();   /* end of PEM data */
		BIO_free(b);
		b = BIO_new_mem_buf(c->key_pem, (int)c->key_len);
		EVP_PKEY *k = b && ok ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
		BIO_free(b);
		ok = ok && k && SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
		EVP_PKEY_free(k);
		if (!ok) {
			log_ssl_errors(l->name);
			pl_warn("listener %s: certificate %u unusable; skipped", l->name, i);
		}
	}
	if (lt->client_ca_pem) {
		X509_STORE *st = X509_STORE_new();
		STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
		BIO *b = BIO_new_mem_buf(lt->client_ca_pem, -1);
		X509 *x;
		int n = 0;
		while (st && names && b && (x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
			X509_STORE_add_cert(st, x);
			X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
			if (nm && !sk_X509_NAME_push(names, nm))
				X509_NAME_free(nm);
			X509_free(x);
			n++;
		}
		ERR_clear_error();
		BIO_free(b);
		if (!st || !names || n == 0) {
			X509_STORE_free(st);
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			SSL_CTX_free(ctx);
			pl_warn("listener %s: client CA bundle unusable", l->name);
			return NULL;
		}
		SSL_CTX_set0_verify_cert_store(ctx, st);
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	return ctx;
}

static void material_key(const struct pl_listener_tls *lt, unsigned char out[32])
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned int len = 32;
	if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1)
		PL_PANIC("SHA-256 unavailable");
	for (uint32_t i = 0; i < lt->n_certs; i++) {
		uint32_t l2[2] = { lt->certs[i].cert_len, lt->certs[i].key_len };
		EVP_DigestUpdate(m, l2, sizeof(l2));
		EVP_DigestUpdate(m, lt->certs[i].cert_pem, lt->certs[i].cert_len);
		EVP_DigestUpdate(m, lt->certs[i].key_pem, lt->certs[i].key_len);
	}
	if (lt->client_ca_pem)
		EVP_DigestUpdate(m, lt->client_ca_pem, strlen(lt->client_ca_pem) + 1);
	int opt = lt->client_optional;
	EVP_DigestUpdate(m, &opt, sizeof(opt));
	EVP_DigestFinal_ex(m, out, &len);
	EVP_MD_CTX_free(m);
}

static struct cent *cache_get(const struct pl_listener *l)
{
	unsigned char key[32];
	material_key(l->tls, key);
	pthread_mutex_lock(&cache_lock);
	struct cent *e;
	for (e = cache; e; e = e->next)
		if (memcmp(e->key, key, sizeof(key)) == 0)
			break;
	if (e) {
		e->users++;
	} else {
		SSL_CTX *ctx = ctx_build(l, key);
		e = ctx ? calloc(1, sizeof(*e)) : NULL;
		if (e) {
			memcpy(e->key, key, sizeof(key));
			e->ctx = ctx;
			e->users = 1;
			e->next = cache;
			cache = e;
			pl_info("listener %s: TLS context built (%u certificate(s)%s)", l->name, l->tls->n_certs,
				l->tls->client_ca_pem ? ", client certificates verified" : "");
		} else {
			SSL_CTX_free(ctx);
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return e;
}

static void cache_put(struct cent *e)
{
	pthread_mutex_lock(&cache_lock);
	if (--e->users == 0) {
		struct cent **pp = &cache;
		while (*pp != e)
			pp = &(*pp)->next;
		*pp = e->next;
		SSL_CTX_free(e->ctx);   /* live SSLs keep their own reference */
		free(e);
	}
	pthread_mutex_unlock(&cache_lock);
}

struct pl_tls_set *pl_tls_set_new(const struct pl_table *t)
{
	uint32_t n = 0, any = 0;
	for (uint32_t b = 0; b < t->n_binds; b++)
		for (uint32_t i = 0; i < t->binds[b].n_listeners; i++, n++)
			any |= t->binds[b].listeners[i].tls && t->binds[b].listeners[i].tls->mode == PL_TLS_TERMINATE;
	if (!any || pl_tls_init() != 0)
		return NULL;
	struct pl_tls_set *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->t = t;
	s->n = n;
	s->bind_off = calloc(t->n_binds, sizeof(*s->bind_off));
	s->ctx = calloc(n, sizeof(*s->ctx));
	s->ent = calloc(n, sizeof(*s->ent));
	if (!s->bind_off || !s->ctx || !s->ent) {
		pl_tls_set_free(s);
		return NULL;
	}
	n = 0;
	for (uint32_t b = 0; b < t->n_binds; b++) {
		s->bind_off[b] = n;
		for (uint32_t i = 0; i < t->binds[b].n_listeners; i++, n++) {
			const struct pl_listener *l = &t->binds[b].listeners[i];
			if (!l->tls || l->tls->mode != PL_TLS_TERMINATE || l->tls->n_certs == 0)
				continue;
			s->ent[n] = cache_get(l);
			s->ctx[n] = s->ent[n] ? s->ent[n]->ctx : NULL;
		}
	}
	return s;
}

void pl_tls_set_free(struct pl_tls_set *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; s->ent && i < s->n; i++)
		if (s->ent[i])
			cache_put(s->ent[i]);
	free(s->bind_off);
	free(s->ctx);
	free(s->ent);
	free(s);
}

static SSL_CTX *set_ctx(const struct pl_tls_set *s, const struct pl_bind *b, const struct pl_listener *l)
{
	if (!s || !b || !l)
		return NULL;
	uint32_t bi = (uint32_t)(b - s->t->binds);
	if (bi >= s->t->n_binds)
		return NULL;
	return s->ctx[s->bind_off[bi] + (uint32_t)(l - b->listeners)];
}

/* -------------------------------------------------------------- handshakes */

struct pl_tlshs {
	struct pl_worker *w;
	struct pl_lsock *ls;
	struct pl_wtable *wt;            /* pinned: bind and contexts stay valid during the handshake */
	const struct pl_bind *bind;      /* in wt->t */
	const struct pl_listener *l;     /* the listener whose certificate serves the handshake */
	int fd;
	int closed;
	struct pl_tlsconn *tc;
	ev_io io;
	ev_timer tmo;
	struct sockaddr_storage sa;
	socklen_t salen;
	struct pl_tlshs *next, *prev;
};

static const struct pl_listener *hs_listener(const struct pl_tlshs *h)
{
	return h->l;
}

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void idx_init(void)
{
	hs_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int accept_any_cert(int ok, X509_STORE_CTX *x)
{
	return 1;   /* AllowInsecureFallback: verification result is not enforced */
}

/* Reads the SNI from the ClientHello (RFC 6066 server_name list, host_name type). */
static void hello_sni(SSL *ssl, char *out, size_t outsz)
{
	const unsigned char *p;
	size_t len;
	out[0] = '\0';
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
		return;
	size_t list = ((size_t)p[0] << 8) | p[1];
	if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name)
		return;
	size_t n = ((size_t)p[3] << 8) | p[4];
	if (n == 0 || n + 5 > len || n >= outsz)
		return;
	for (size_t i = 0; i < n; i++) {
		char ch = (char)p[5 + i];
		if (ch <= ' ' || ch > '~') {
			out[0] = '\0';
			return;
		}
		out[i] = pl_lower(ch);
	}
	out[n] = '\0';
}

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	struct pl_tlshs *h = SSL_get_ex_data(ssl, hs_idx);
	if (!h)
		return SSL_CLIENT_HELLO_SUCCESS;
	hello_sni(ssl, h->tc->sni, sizeof(h->tc->sni));
	const struct pl_bind *b = h->bind;
	const struct pl_tls_set *set = h->wt->tls;
	const struct pl_listener *l = NULL;
	if (h->tc->sni[0])
		l = pl_router_listener(b, h->tc->sni, (uint32_t)strlen(h->tc->sni));
	SSL_CTX *ctx = l && l->tls && l->tls->mode == PL_TLS_TERMINATE ? set_ctx(set, b, l) : NULL;
	if (!ctx) {
		/* default: the least specific listener with a certificate */
		for (uint32_t i = b->n_listeners; i-- > 0 && !ctx;) {
			l = &b->listeners[i];
			ctx = set_ctx(set, b, l);
		}
	}
	if (!ctx) {
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	h->l = l;
	if (SSL_set_SSL_CTX(ssl, ctx) != ctx) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (l->tls->client_ca_pem) {
		if (l->tls->client_optional)
			SSL_set_verify(ssl, SSL_VERIFY_PEER, accept_any_cert);
		else
			SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	} else {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static void hs_close(struct pl_tlshs *h, int keep_fd)
{
	if (h->closed)
		return;
	struct pl_worker *w = h->w;
	h->closed = 1;
	ev_io_stop(w->loop, &h->io);
	ev_timer_stop(w->loop, &h->tmo);
	if (!keep_fd) {
		if (h->tc) {
			SSL_free(h->tc->ssl);
			free(h->tc);
		}
		close(h->fd);
		atomic_fetch_sub_explicit(&w->n_conns, 1, memory_order_relaxed);
	}
	h->tc = NULL;
	h->fd = -1;
	if (h->prev)
		h->prev->next = h->next;
	else
		w->tls_hs = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = NULL;
	h->next = w->tls_hs_dead;
	w->tls_hs_dead = h;
}

static void peer_text(const struct sockaddr_storage *sa, char *buf, size_t n)
{
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)n);
	else if (sa->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)n);
	else
		snprintf(buf, n, "unknown");
}

static void hs_peer(const struct pl_tlshs *h, char *buf, size_t n)
{
	peer_text(&h->sa, buf, n);
}

static void hs_fail(struct pl_tlshs *h, const char *why)
{
	char peer[INET6_ADDRSTRLEN];
	hs_peer(h, peer, sizeof(peer));
	unsigned long e = ERR_get_error();
	char buf[200] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	pl_info("%s: TLS handshake failed (sni \"%s\"): %s%s%s", peer, h->tc ? h->tc->sni : "", why, *buf ? ": " : "",
		buf);
	hs_close(h, 0);
}

static void hs_step(struct pl_tlshs *h)
{
	ERR_clear_error();
	int r = SSL_do_handshake(h->tc->ssl);
	if (r == 1) {
		struct pl_tlsconn *tc = h->tc;
		const unsigned char *ap;
		unsigned apl;
		SSL_get0_alpn_selected(tc->ssl, &ap, &apl);
		tc->h2 = apl == 2 && memcmp(ap, "h2", 2) == 0;
		SSL_set_ex_data(tc->ssl, hs_idx, NULL);
		int fd = h->fd;
		struct pl_worker *w = h->w;
		struct pl_lsock *ls = h->ls;
		struct sockaddr_storage sa = h->sa;
		socklen_t sl = h->salen;
		const struct pl_listener *l = h->l;
		struct pl_rule *rule = NULL;
		if (l && l->proto == PL_PROTO_TLS) {
			/* TLSRoute mode Terminate: the route by SNI, then plaintext to its backend */
			rule = pl_pt_rule(l, tc->sni);
			if (!rule) {
				hs_fail(h, "no TLSRoute for this server name");
				return;
			}
		}
		struct pl_wtable *wt = h->wt;
		pl_wtable_get(wt);
		hs_close(h, 1);
		/* the HTTP connection (or the stream) counts itself */
		atomic_fetch_sub_explicit(&w->n_conns, 1, memory_order_relaxed);
		if (rule) {
			char peer[INET6_ADDRSTRLEN];
			peer_text(&sa, peer, sizeof(peer));
			pl_l4_stream_tls(w, ls, fd, peer, wt, rule, tc);
		} else {
			pl_h1_accept_tls(w, ls, fd, (struct sockaddr *)&sa, sl, tc);
		}
		pl_wtable_put(wt);
		return;
	}
	switch (SSL_get_error(h->tc->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ev_io_stop(h->w->loop, &h->io);
		ev_io_set(&h->io, h->fd, EV_READ);
		ev_io_start(h->w->loop, &h->io);
		return;
	case SSL_ERROR_WANT_WRITE:
		ev_io_stop(h->w->loop, &h->io);
		ev_io_set(&h->io, h->fd, EV_WRITE);
		ev_io_start(h->w->loop, &h->io);
		return;
	case SSL_ERROR_ZERO_RETURN:
		hs_fail(h, "client closed");
		return;
	case SSL_ERROR_SYSCALL:
		hs_fail(h, errno ? strerror(errno) : "client closed");
		return;
	default:
		hs_fail(h, "protocol error");
		return;
	}
}

static void on_hs_io(struct ev_loop *loop, ev_io *io, int revents)
{
	hs_step(io->data);
}

static void on_hs_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pl_tlshs *h = t->data;
	hs_fail(h, "timeout");
}

void pl_tls_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen)
{
	pthread_once(&idx_once, idx_init);
	if (pl_tls_init() != 0 || !w->wt || !w->wt->tls || !ls->bind) {
		close(fd);
		return;
	}
	struct pl_tlshs *h = calloc(1, sizeof(*h));
	struct pl_tlsconn *tc = calloc(1, sizeof(*tc));
	SSL *ssl = h && tc ? SSL_new(base_ctx) : NULL;
	if (!ssl || SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		free(tc);
		free(h);
		close(fd);
		ERR_clear_error();
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	tc->ssl = ssl;
	h->tc = tc;
	h->w = w;
	h->ls = ls;
	h->wt = w->wt;
	pl_wtable_get(h->wt);
	pl_lsock_get(ls);
	h->bind = ls->bind;
	h->fd = fd;
	if (salen > sizeof(h->sa))
		salen = sizeof(h->sa);
	memcpy(&h->sa, sa, salen);
	h->salen = salen;
	SSL_set_ex_data(ssl, hs_idx, h);
	SSL_set_accept_state(ssl);
	ev_io_init(&h->io, on_hs_io, fd, EV_READ);
	h->io.data = h;
	ev_timer_init(&h->tmo, on_hs_timeout, (double)w->cfg->header_timeout_ms / 1000.0, 0.);
	h->tmo.data = h;
	ev_timer_start(w->loop, &h->tmo);
	h->next = w->tls_hs;
	if (w->tls_hs)
		w->tls_hs->prev = h;
	w->tls_hs = h;
	atomic_fetch_add_explicit(&w->n_conns, 1, memory_order_relaxed);
	hs_step(h);
}

void pl_tls_reap(struct pl_worker *w)
{
	while (w->tls_hs_dead) {
		struct pl_tlshs *h = w->tls_hs_dead;
		w->tls_hs_dead = h->next;
		pl_wtable_put(h->wt);
		pl_lsock_put(h->ls);
		free(h);
	}
}

void pl_tls_close_all(struct pl_worker *w)
{
	while (w->tls_hs)
		hs_close(w->tls_hs, 0);
}

/* ------------------------------------------------------------------ I/O */

static ssize_t io_error(struct pl_tlsconn *t, int r)
{
	int e = SSL_get_error(t->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		t->rd_wants_write = 1;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		t->failed = 1;
		ERR_clear_error();
		return errno ? -errno : 0;
	default:
		t->failed = 1;
		ERR_clear_error();
		return -EPROTO;
	}
}

ssize_t pl_tls_read(struct pl_tlsconn *t, struct pl_buf *b)
{
	ssize_t rr = pl_buf_read_room(b);
	if (rr < 0)
		return rr;
	size_t room = (size_t)rr;
	t->rd_wants_write = 0;
	ERR_clear_error();
	errno = 0;
	int r = SSL_read(t->ssl, b->data + b->len, room > INT32_MAX ? INT32_MAX : (int)room);
	if (r > 0) {
		b->len += (uint32_t)r;
		return r;
	}
	ssize_t rc = io_error(t, r);
	if (rc == -EAGAIN && !t->rd_wants_write)
		return -EAGAIN;
	return rc;
}

ssize_t pl_tls_write(struct pl_tlsconn *t, struct pl_buf *b)
{
	size_t n = pl_buf_size(b);
	if (n == 0)
		return 0;
	ERR_clear_error();
	errno = 0;
	int r = SSL_write(t->ssl, pl_buf_rptr(b), n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0) {
		pl_buf_consume(b, (size_t)r);
		return r;
	}
	ssize_t rc = io_error(t, r);
	t->rd_wants_write = 0;   /* a write that wants to read: renegotiation is disabled, treat as blocked */
	if (rc == 0)
		return -EPIPE;
	return rc;
}

int pl_tls_pending(const struct pl_tlsconn *t)
{
	return SSL_pending(t->ssl) > 0;
}

int pl_tls_read_wants_write(const struct pl_tlsconn *t)
{
	return t->rd_wants_write;
}

void pl_tls_close_notify(struct pl_tlsconn *t)
{
	if (t->failed)
		return;
	ERR_clear_error();
	if (SSL_shutdown(t->ssl) < 0)
		t->failed = 1;
	ERR_clear_error();
}

void pl_tls_conn_free(struct pl_tlsconn *t)
{
	if (!t)
		return;
	if (!t->failed && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
		pl_tls_close_notify(t);
	SSL_free(t->ssl);
	ERR_clear_error();
	free(t);
}

const char *pl_tls_sni(const struct pl_tlsconn *t)
{
	return t->sni;
}

int pl_tls_alpn_is_h2(const struct pl_tlsconn *t)
{
	return t->h2;
}
