/*
 * ClientHello parser (contract in clienthello.h). Lengths are checked before
 * every read; a nested length that runs past its container is malformed.
 */
#include "pl.h"
#include "clienthello.h"

#define REC_HDR 5
#define HS_HDR 4
#define MAX_RECORD (16384u + 2048u)   /* TLSCiphertext limit; a plaintext ClientHello is smaller */

struct rd {
	const uint8_t *p;
	size_t n, off;
};

static int get8(struct rd *r, uint32_t *v)
{
	if (r->n - r->off < 1)
		return -1;
	*v = r->p[r->off++];
	return 0;
}

static int get16(struct rd *r, uint32_t *v)
{
	if (r->n - r->off < 2)
		return -1;
	*v = ((uint32_t)r->p[r->off] << 8) | r->p[r->off + 1];
	r->off += 2;
	return 0;
}

static int skip(struct rd *r, size_t k)
{
	if (r->n - r->off < k)
		return -1;
	r->off += k;
	return 0;
}

/* server_name extension body: a list of (type, name); the first host_name counts. */
static int parse_sni(const uint8_t *p, size_t n, struct pl_clienthello *out)
{
	struct rd r = { p, n, 0 };
	uint32_t list, type, len;
	if (get16(&r, &list) || list != n - 2 || list == 0)
		return -1;
	while (r.off < n) {
		if (get8(&r, &type) || get16(&r, &len) || r.n - r.off < len)
			return -1;
		if (type == 0 && out->sni_len == 0) {
			if (len == 0 || len > 253)
				return -1;
			for (uint32_t i = 0; i < len; i++) {
				char ch = (char)r.p[r.off + i];
				int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
					 ch == '-' || ch == '.' || ch == '_';
				if (!ok)
					return -1;
				out->sni[i] = pl_lower(ch);
			}
			if (out->sni[0] == '.' || out->sni[len - 1] == '.')
				return -1;
			out->sni[len] = '\0';
			out->sni_len = len;
		}
		r.off += len;
	}
	return 0;
}

static int parse_hello(const uint8_t *p, size_t n, struct pl_clienthello *out)
{
	struct rd r = { p, n, 0 };
	uint32_t v, len;
	if (get16(&r, &v))
		return PL_CH_E_MALFORMED;
	out->version = (uint16_t)v;
	if ((v >> 8) != 3 || skip(&r, 32))                         /* random */
		return PL_CH_E_MALFORMED;
	if (get8(&r, &len) || len > 32 || skip(&r, len))           /* legacy_session_id */
		return PL_CH_E_MALFORMED;
	if (get16(&r, &len) || len < 2 || len % 2 || skip(&r, len)) /* cipher_suites */
		return PL_CH_E_MALFORMED;
	if (get8(&r, &len) || len < 1 || skip(&r, len))            /* compression_methods */
		return PL_CH_E_MALFORMED;
	if (r.off == n)
		return PL_CH_OK;                                   /* no extensions (old clients) */
	if (get16(&r, &len) || len != n - r.off)
		return PL_CH_E_MALFORMED;
	/* duplicate detection for the extensions that matter plus a small bitmap of the low types */
	uint64_t seen = 0;
	while (r.off < n) {
		uint32_t type, elen;
		if (get16(&r, &type) || get16(&r, &elen) || r.n - r.off < elen)
			return PL_CH_E_MALFORMED;
		if (type < 64) {
			if (seen & (1ull << type))
				return PL_CH_E_MALFORMED;
			seen |= 1ull << type;
		}
		if (type == 0 && parse_sni(r.p + r.off, elen, out) != 0)
			return PL_CH_E_MALFORMED;
		if (type == 16)
			out->has_alpn = 1;
		if (type == 43)
			out->has_supported_versions = 1;
		r.off += elen;
	}
	return PL_CH_OK;
}

int pl_clienthello_parse(const uint8_t *p, size_t n, struct pl_clienthello *out)
{
	memset(out, 0, sizeof(*out));
	/* the handshake message, reassembled from the records' fragments */
	static __thread uint8_t msg[PL_CH_MAX_MSG + HS_HDR];
	size_t have = 0, need = 0;   /* need: whole message length once the header is known */
	size_t off = 0;
	for (;;) {
		if (n - off < REC_HDR) {
			/* the first byte already tells TLS or not */
			if (off == 0 && n >= 1 && p[0] != 22)
				return PL_CH_E_NOT_TLS;
			if (off == 0 && n >= 2 && p[1] != 3)
				return PL_CH_E_NOT_TLS;
			return PL_CH_MORE;
		}
		const uint8_t *h = p + off;
		if (h[0] != 22 || h[1] != 3)
			return off == 0 ? PL_CH_E_NOT_TLS : PL_CH_E_MALFORMED;
		size_t rl = ((size_t)h[3] << 8) | h[4];
		if (rl == 0 || rl > MAX_RECORD)
			return PL_CH_E_MALFORMED;
		size_t avail = PL_MIN(rl, n - off - REC_HDR);
		size_t take = avail;
		if (need && have + take > need)
			return PL_CH_E_MALFORMED;   /* more handshake bytes than the ClientHello: no coalescing allowed */
		if (have + take > sizeof(msg))
			return PL_CH_E_TOO_BIG;
		memcpy(msg + have, h + REC_HDR, take);
		have += take;
		if (!need && have >= HS_HDR) {
			if (msg[0] != 1)
				return PL_CH_E_MALFORMED;   /* not a ClientHello */
			size_t body = ((size_t)msg[1] << 16) | ((size_t)msg[2] << 8) | msg[3];
			if (body > PL_CH_MAX_MSG)
				return PL_CH_E_TOO_BIG;
			need = HS_HDR + body;
			if (have > need)
				return PL_CH_E_MALFORMED;
		}
		if (need && have == need) {
			if (avail < rl)
				return PL_CH_MORE;          /* rest of the record still to come: keep answers split-independent */
			return parse_hello(msg + HS_HDR, need - HS_HDR, out);
		}
		if (avail < rl)
			return PL_CH_MORE;
		off += REC_HDR + rl;
	}
}

const char *pl_clienthello_strerror(int rc)
{
	switch (rc) {
	case PL_CH_OK: return "ok";
	case PL_CH_MORE: return "incomplete";
	case PL_CH_E_NOT_TLS: return "not a TLS handshake";
	case PL_CH_E_MALFORMED: return "malformed ClientHello";
	case PL_CH_E_TOO_BIG: return "ClientHello too large";
	}
	return "?";
}
