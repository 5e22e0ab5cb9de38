/*
 * Unit tests for proxy/clienthello.c. Real ClientHellos come from OpenSSL
 * clients writing into a memory BIO (TLS 1.3 and 1.2, with and without SNI
 * and ALPN); every one is also parsed from every prefix (must be "more"),
 * split over several records, and corrupted field by field.
 */
#include "common/pl.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy/clienthello.h"
#include "check.h"

/* A ClientHello as an OpenSSL client sends it; returns its length. */
static size_t make_hello(uint8_t *out, size_t cap, const char *sni, int max_version, int alpn)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (max_version)
		SSL_CTX_set_max_proto_version(ctx, max_version);
	SSL *ssl = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	if (alpn) {
		static const unsigned char protos[] = "\x02h2\x08http/1.1";
		SSL_set_alpn_protos(ssl, protos, sizeof(protos) - 1);
	}
	SSL_set_connect_state(ssl);
	SSL_do_handshake(ssl);
	int n = BIO_read(wb, out, (int)cap);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return n > 0 ? (size_t)n : 0;
}

/* Re-frames the handshake message of one-record hello h into records of at most frag bytes. */
static size_t refragment(const uint8_t *h, size_t n, size_t frag, uint8_t *out)
{
	const uint8_t *msg = h + 5;
	size_t mlen = n - 5, o = 0;
	for (size_t off = 0; off < mlen; off += frag) {
		size_t k = PL_MIN(frag, mlen - off);
		out[o++] = 22;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)k;
		memcpy(out + o, msg + off, k);
		o += k;
	}
	return o;
}

static void check_hello(const char *sni, int maxv, int alpn)
{
	uint8_t h[4096], f[8192];
	size_t n = make_hello(h, sizeof(h), sni, maxv, alpn);
	CHECK(n > 50);
	struct pl_clienthello ch;
	CHECK(pl_clienthello_parse(h, n, &ch) == PL_CH_OK);
	CHECK(strcmp(ch.sni, sni ? sni : "") == 0);
	CHECK(ch.has_alpn == !!alpn);
	for (size_t k = 0; k < n; k++)
		CHECK(pl_clienthello_parse(h, k, &ch) == PL_CH_MORE);
	/* trailing bytes after the hello (e.g. early data records) do not matter */
	memcpy(f, h, n);
	memcpy(f + n, "\x17\x03\x03\x00\x01x", 6);
	CHECK(pl_clienthello_parse(f, n + 6, &ch) == PL_CH_OK);
	/* the same message in small records */
	for (size_t frag = 1; frag < 64; frag += 7) {
		size_t m = refragment(h, n, frag, f);
		if (m > sizeof(f))
			break;
		CHECK(pl_clienthello_parse(f, m, &ch) == PL_CH_OK && strcmp(ch.sni, sni ? sni : "") == 0);
		CHECK(pl_clienthello_parse(f, m - 1, &ch) == PL_CH_MORE);
	}
	/* every single-byte corruption: never a crash, and never a different SNI with OK */
	for (size_t i = 0; i < n; i++) {
		memcpy(f, h, n);
		f[i] ^= 0xff;
		int rc = pl_clienthello_parse(f, n, &ch);
		CHECK(rc == PL_CH_OK || rc == PL_CH_MORE || rc < 0);
	}
	/* header corruptions with known answers */
	memcpy(f, h, n);
	f[0] = 23;
	CHECK(pl_clienthello_parse(f, n, &ch) == PL_CH_E_NOT_TLS);
	memcpy(f, h, n);
	f[5] = 2;   /* ServerHello, not ClientHello */
	CHECK(pl_clienthello_parse(f, n, &ch) == PL_CH_E_MALFORMED);
	memcpy(f, h, n);
	f[6] = 0x01;   /* handshake length > 64 KiB */
	CHECK(pl_clienthello_parse(f, n, &ch) == PL_CH_E_TOO_BIG);
}

static void test_others(void)
{
	struct pl_clienthello ch;
	CHECK(pl_clienthello_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &ch) == PL_CH_E_NOT_TLS);
	CHECK(pl_clienthello_parse((const uint8_t *)"G", 1, &ch) == PL_CH_E_NOT_TLS);
	CHECK(pl_clienthello_parse((const uint8_t *)"\x16", 1, &ch) == PL_CH_MORE);
	CHECK(pl_clienthello_parse((const uint8_t *)"", 0, &ch) == PL_CH_MORE);
	CHECK(pl_clienthello_parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5, &ch) == PL_CH_E_MALFORMED);
	/* an SNI with a character no host name has */
	uint8_t h[4096];
	size_t n = make_hello(h, sizeof(h), "bad.example.com", 0, 0);
	for (size_t i = 0; i + 15 <= n; i++)
		if (memcmp(h + i, "bad.example.com", 15) == 0) {
			h[i + 3] = '/';
			CHECK(pl_clienthello_parse(h, n, &ch) == PL_CH_E_MALFORMED);
			break;
		}
	/* upper case is lowered */
	n = make_hello(h, sizeof(h), "MiXeD.Example.COM", 0, 0);
	CHECK(pl_clienthello_parse(h, n, &ch) == PL_CH_OK && strcmp(ch.sni, "mixed.example.com") == 0);
}

int main(void)
{
	check_hello("foo.example.com", 0, 1);
	check_hello("a.b.c.example.org", TLS1_2_VERSION, 0);
	check_hello(NULL, 0, 0);
	check_hello("x", TLS1_2_VERSION, 1);
	test_others();
	if (fails) {
		fprintf(stderr, "test_clienthello: %d check(s) failed\n", fails);
		return 1;
	}
	fprintf(stderr, "test_clienthello: ok\n");
	return 0;
}
