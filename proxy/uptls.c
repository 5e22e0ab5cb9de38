/*
 * TLS to backends: client contexts, verification, error text. See uptls.h.
 */
#include "pl.h"
#include "log.h"
#include "table-t.h"
#include "uptls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>

/*
 * The cache is keyed by the CA PEM text itself (NULL: system store) and the
 * Gateway's client certificate and key (NULL: none), compared
 * byte for byte: no hash collision can hand a connection the wrong trust
 * anchors. The list is kept in use order (a hit moves to the front).
 * Bounded: past MAX_CTX entries the least recently used is dropped (live
 * SSLs keep their own reference).
 */
#define MAX_CTX 64

struct uctx {
	char *ca;                /* NULL: system store */
	char *crt, *key;         /* the Gateway's client certificate; NULL: none */
	SSL_CTX *ctx;
	struct uctx *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct uctx *cache;
static unsigned n_cache;

static void errq(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[200] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
}

/* Loads the client certificate (leaf, then chain) and its key into ctx; 0 or -1 (err filled). */
static int ctx_client_cert(SSL_CTX *ctx, const char *crt, const char *key, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(crt, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
	X509_free(x);
	while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		ok = SSL_CTX_add0_chain_cert(ctx, x) == 1;
		if (!ok)
			X509_free(x);
	}
	BIO_free(b);
	if (ok)
		ERR_clear_error();   /* the end of the PEM stream */
	b = ok ? BIO_new_mem_buf(key, -1) : NULL;
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	ok = ok && k && SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
	EVP_PKEY_free(k);
	if (!ok) {
		errq(err, errlen, "client certificate");
		return -1;
	}
	return 0;
}

static SSL_CTX *ctx_build(const char *ca, const char *crt, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		errq(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (crt && key && ctx_client_cert(ctx, crt, key, err, errlen) != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (!ca) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			errq(err, errlen, "system trust store");
			SSL_CTX_free(ctx);
			return NULL;
		}
		return ctx;
	}
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	BIO *bio = BIO_new_mem_buf(ca, -1);
	unsigned n = 0;
	X509 *x;
	while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(st, x) == 1)
			n++;
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error();   /* the end of the PEM stream leaves a "no start line" */
	if (!n) {
		snprintf(err, errlen, "no usable CA certificate");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void uctx_free(struct uctx *e)
{
	free(e->ca);
	free(e->crt);
	if (e->key)
		OPENSSL_cleanse(e->key, strlen(e->key));   /* private key text */
	free(e->key);
	free(e);
}

/*
 * Under the lock: a new reference to the cached context for the key, moved
 * to the front (most recently used), or NULL.
 */
static SSL_CTX *cache_find(const char *ca, const char *crt, const char *key)
{
	struct uctx **pp = &cache, *e;
	for (; (e = *pp) != NULL; pp = &e->next) {
		if (same(ca, e->ca) && same(crt, e->crt) && same(key, e->key)) {
			*pp = e->next;
			e->next = cache;
			cache = e;
			SSL_CTX_up_ref(e->ctx);
			return e->ctx;
		}
	}
	return NULL;
}

/*
 * A new reference to the context for (ca, client certificate); NULL on error.
 * A miss builds the context outside the lock (PEM parsing and key checks
 * take long; workers connecting with cached contexts must not wait behind
 * it), then inserts it unless another thread inserted the same key
 * meanwhile, whose context is then used and ours dropped.
 */
static SSL_CTX *ctx_get(const char *ca, const char *crt, const char *key, char *err, size_t errlen)
{
	if (!crt || !key)
		crt = key = NULL;
	pthread_mutex_lock(&lock);
	SSL_CTX *hit = cache_find(ca, crt, key);
	pthread_mutex_unlock(&lock);
	if (hit)
		return hit;
	SSL_CTX *ctx = ctx_build(ca, crt, key, err, errlen);
	if (!ctx)
		return NULL;
	struct uctx *e = calloc(1, sizeof(*e));
	if (e && ((ca && !(e->ca = strdup(ca))) || (crt && !(e->crt = strdup(crt))) || (key && !(e->key = strdup(key))))) {
		uctx_free(e);
		e = NULL;
	}
	struct uctx *old = NULL;
	pthread_mutex_lock(&lock);
	hit = cache_find(ca, crt, key);
	if (!hit && e) {
		if (n_cache >= MAX_CTX) {
			/* drop the least recently used: the tail (freed below, outside the lock) */
			struct uctx **t = &cache;
			while ((*t)->next)
				t = &(*t)->next;
			old = *t;
			*t = NULL;
			n_cache--;
		}
		e->ctx = ctx;
		SSL_CTX_up_ref(ctx);
		e->next = cache;
		cache = e;
		n_cache++;
		e = NULL;
	}
	pthread_mutex_unlock(&lock);
	if (old) {
		SSL_CTX_free(old->ctx);
		uctx_free(old);
	}
	if (e)
		uctx_free(e);   /* not inserted: another thread's context won, or no memory for the entry */
	if (hit) {
		SSL_CTX_free(ctx);
		return hit;
	}
	return ctx;   /* uncached if e could not be allocated: the SSL owns it alone */
}

SSL *pl_uptls_new(const struct pl_backend_tls *bt, int fd, char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_get(bt->ca_pem, bt->client_cert_pem, bt->client_key_pem, err, errlen);
	if (!ctx)
		return NULL;
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);   /* the SSL holds its own reference */
	if (!ssl) {
		errq(err, errlen, "SSL_new");
		return NULL;
	}
	if (SSL_set_fd(ssl, fd) != 1 || (bt->sni && *bt->sni && SSL_set_tlsext_host_name(ssl, bt->sni) != 1)) {
		errq(err, errlen, "SSL set-up");
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

/*
 * Which (generation, cluster id) pairs were warned about: a small open-addressed
 * set shared by all workers. A slot holds (low 32 bits of the generation) << 32
 * | id, 0 when free (table generations start at 1), and is claimed with a CAS;
 * slots left by an older generation are taken over, so the set never fills up
 * for good. Probing is bounded: with every probed slot held by this or a newer
 * generation we warn anyway (a repeated line, never a lost one).
 */
#define WARN_SLOTS 256
#define WARN_PROBES 8

static _Atomic uint64_t warned[WARN_SLOTS];

/* 1: the first call for (generation, id), so warn; 0: warned already. */
static int warn_first(uint64_t generation, uint32_t id)
{
	uint32_t g = (uint32_t)generation;
	uint64_t key = (uint64_t)g << 32 | id;
	uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40);
	for (unsigned i = 0; i < WARN_PROBES; i++) {
		_Atomic uint64_t *s = &warned[(h + i) % WARN_SLOTS];
		uint64_t v = atomic_load_explicit(s, memory_order_relaxed);
		for (;;) {
			if (v == key)
				return 0;
			/* a live key of this or a newer generation: not ours to take */
			if (v && (int32_t)((uint32_t)(v >> 32) - g) >= 0)
				break;
			if (atomic_compare_exchange_weak_explicit(s, &v, key, memory_order_relaxed,
								  memory_order_relaxed))
				return 1;
			/* v reloaded: another thread wrote the slot, look again */
		}
	}
	return 1;
}

void pl_uptls_warn_unusable(const struct pl_cluster *cl, uint64_t generation)
{
	if (!warn_first(generation, cl->id))
		return;
	pl_warn("cluster %s: BackendTLSPolicy %s is unusable (%s): connections refused", cl->name,
		cl->tls && cl->tls->policy ? cl->tls->policy : "?", cl->tls && cl->tls->error ? cl->tls->error : "?");
}

static int uri_san(X509 *cert, const char *uri)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int ok = 0;
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !ok; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_URI)
			continue;
		const ASN1_IA5STRING *s = g->d.uniformResourceIdentifier;
		size_t n = strlen(uri);
		ok = s && (size_t)s->length == n && memcmp(s->data, uri, n) == 0;
	}
	GENERAL_NAMES_free(gens);
	return ok;
}

static int dns_san(X509 *cert, const char *name)
{
	/* SANs only: a certificate naming the host in its CN alone is not accepted */
	return X509_check_host(cert, name, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
					      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

int pl_uptls_check_names(SSL *ssl, const struct pl_backend_tls *bt, char *err, size_t errlen)
{
	long vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		snprintf(err, errlen, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
		return -1;
	}
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert) {
		snprintf(err, errlen, "backend sent no certificate");
		return -1;
	}
	if (bt->n_sans == 0) {
		if (bt->sni && dns_san(cert, bt->sni))
			return 0;
		snprintf(err, errlen, "certificate verify failed: hostname %.100s not in the certificate's SANs",
			 bt->sni ? bt->sni : "");
		return -1;
	}
	for (uint32_t i = 0; i < bt->n_sans; i++) {
		const char *s = bt->sans[i];
		if (strchr(s, ':') ? uri_san(cert, s) : dns_san(cert, s))
			return 0;
	}
	snprintf(err, errlen, "certificate verify failed: none of the %u subjectAltNames of the policy matches",
		 bt->n_sans);
	return -1;
}

void pl_uptls_error(SSL *ssl, int ssl_err, char *err, size_t errlen)
{
	long vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		ERR_clear_error();
		snprintf(err, errlen, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
		return;
	}
	if (ssl_err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		snprintf(err, errlen, "TLS handshake: %s", errno ? strerror(errno) : "unexpected EOF");
		return;
	}
	errq(err, errlen, "TLS handshake failed");
}
