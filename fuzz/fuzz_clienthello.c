/*
 * libFuzzer target: the passthrough ClientHello parser (proxy/clienthello.c).
 *
 * Input: two bytes choosing a cut point, then the bytes a client might send.
 * Besides "no crash" (ASan, UBSan), it asserts the parser's contract that
 * the answer does not depend on how the bytes arrived: a prefix gives either
 * PL_CH_MORE or exactly the answer of the whole input (same SNI when OK), and
 * a returned SNI is lower-case host-name characters of the stated length.
 */
#include "common/pl.h"

#include "proxy/clienthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t cut = ((size_t)data[0] << 8) | data[1];
	data += 2;
	size -= 2;
	if (size > PL_CH_MAX_INPUT)
		size = PL_CH_MAX_INPUT;
	struct pl_clienthello full, part;
	int rf = pl_clienthello_parse(data, size, &full);
	if (rf == PL_CH_OK) {
		if (full.sni_len != strlen(full.sni) || full.sni_len > 253)
			__builtin_trap();
		for (size_t i = 0; i < full.sni_len; i++) {
			char ch = full.sni[i];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
				__builtin_trap();
		}
	}
	if (cut > size)
		cut = size;
	int rp = pl_clienthello_parse(data, cut, &part);
	if (rp != PL_CH_MORE && rp != rf)
		__builtin_trap();
	if (rp == PL_CH_OK && strcmp(part.sni, full.sni) != 0)
		__builtin_trap();
	return 0;
}
