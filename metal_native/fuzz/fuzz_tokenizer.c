/* fuzz_tokenizer.c - libFuzzer target for the tiktoken ranks parser and the
 * tokenizer view: the input is a ranks file; whatever loads is decoded and
 * searched. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mind4.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    mind4_tokenizer* t = NULL;
    if (mind4_tokenizer_create_from_memory((const char*)data, size, &t) != MIND4_SUCCESS) return 0;
    uint32_t ranked = 0, vocab = 0;
    mind4_tokenizer_get_num_tokens(t, &ranked, &vocab);
    mind4_tokenizer_add_special(t, ranked + (uint32_t)(size % 7), "<|s|>", 5);
    uint32_t ids[8];
    for (int i = 0; i < 8; i++) ids[i] = (uint32_t)((size * 31u + (size_t)i * 17u) % (vocab + 3));
    uint8_t out[256];
    size_t n = 0;
    if (mind4_tokenizer_decode(t, ids, 8, out, sizeof out, &n) == MIND4_SUCCESS) {
        uint32_t id;
        mind4_tokenizer_find(t, out, n > 4 ? 4 : n, &id);
    }
    mind4_tokenizer_release(t);
    return 0;
}
