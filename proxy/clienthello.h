/*
 * TLS ClientHello parser for passthrough routing: pure, no I/O, no
 * allocation; fuzzed by fuzz/fuzz_clienthello.c.
 *
 * pl_clienthello_parse() reads the TLS records at p[0..n) (bytes peeked from
 * a socket, not consumed), reassembles the first handshake message across
 * records (up to PL_CH_MAX_MSG bytes), and, if it is a ClientHello, extracts
 * the server_name (host_name) and whether ALPN was offered.
 *
 * Returns
 *   PL_CH_OK          a complete, well-formed ClientHello; out filled
 *   PL_CH_MORE        well-formed so far, more bytes needed
 *   PL_CH_E_NOT_TLS   the first bytes are not a TLS handshake record
 *   PL_CH_E_MALFORMED broken lengths, not a ClientHello, duplicate
 *                     extensions, invalid server name
 *   PL_CH_E_TOO_BIG   the ClientHello exceeds PL_CH_MAX_MSG
 * The answer depends only on the bytes, never on how they were split.
 */
#ifndef PL_CLIENTHELLO_H
#define PL_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

#define PL_CH_MAX_MSG (16u * 1024)
/* Enough input for any ClientHello we accept: records of at most PL_CH_MAX_MSG bytes plus headers. */
#define PL_CH_MAX_INPUT (PL_CH_MAX_MSG + 64u * 5u)

enum { PL_CH_OK = 1, PL_CH_MORE = 0, PL_CH_E_NOT_TLS = -1, PL_CH_E_MALFORMED = -2, PL_CH_E_TOO_BIG = -3 };

struct pl_clienthello {
	char sni[256];           /* lower-case host name, "" when absent */
	uint32_t sni_len;
	uint16_t version;        /* legacy_version of the ClientHello */
	uint8_t has_alpn;
	uint8_t has_supported_versions;
};

int pl_clienthello_parse(const uint8_t *p, size_t n, struct pl_clienthello *out);
const char *pl_clienthello_strerror(int rc);

#endif
