/* test_tokenizer.c - the tokenizer view: ids <-> bytes over a tiktoken ranks
 * file (random vocabularies and the repository's mind4-8k), specials, decode,
 * find, and malformed ranks files. */
#include "m4test.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t encode_b64(const unsigned char* p, size_t n, char* out) {
    size_t w = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out[w++] = B64[(x >> 18) & 63];
        out[w++] = B64[(x >> 12) & 63];
        out[w++] = i + 1 < n ? B64[(x >> 6) & 63] : '=';
        out[w++] = i + 2 < n ? B64[x & 63] : '=';
    }
    out[w] = '\0';
    return w;
}

static void test_random_vocab(void) {
    size_t extra = rnd_int(1, 300), N = 256 + extra;
    unsigned char(*tok)[8] = calloc(N, 8);
    size_t* len = calloc(N, sizeof(size_t));
    for (size_t i = 0; i < 256; i++) tok[i][0] = (unsigned char)i, len[i] = 1;
    for (size_t i = 256; i < N; i++) { /* distinct: the id's bytes, then random bytes */
        len[i] = rnd_int(3, 8);
        tok[i][0] = (unsigned char)(i & 0xff);
        tok[i][1] = (unsigned char)(i >> 8);
        for (size_t j = 2; j < len[i]; j++) tok[i][j] = (unsigned char)rnd_int(0, 255);
        tok[i][len[i] - 1] |= 0x80; /* never equal to a shorter token's padding */
    }
    /* ranks file in shuffled order */
    size_t* order = calloc(N, sizeof(size_t));
    for (size_t i = 0; i < N; i++) order[i] = i;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = rnd_int(0, i), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    char* text = calloc(N, 32);
    size_t w = 0;
    for (size_t k = 0; k < N; k++) {
        size_t i = order[k];
        w += encode_b64(tok[i], len[i], text + w);
        w += (size_t)sprintf(text + w, k % 7 == 0 ? "  %zu\r\n" : " %zu\n", i);
        if (k % 11 == 0) text[w++] = '\n'; /* blank lines are allowed */
    }
    mind4_tokenizer* t = NULL;
    CHECK_OK(mind4_tokenizer_create_from_memory(text, w, &t));
    if (!t) return;
    uint32_t ranked = 0, vocab = 0;
    CHECK_OK(mind4_tokenizer_get_num_tokens(t, &ranked, &vocab));
    CHECK(ranked == N && vocab == N, "counts %u %u want %zu", ranked, vocab, N);
    for (size_t i = 0; i < N; i++) {
        const uint8_t* b;
        size_t n;
        CHECK_OK(mind4_tokenizer_get_token(t, (uint32_t)i, &b, &n));
        CHECK(n == len[i] && memcmp(b, tok[i], n) == 0, "token %zu bytes differ", i);
        uint32_t id = 0;
        CHECK_OK(mind4_tokenizer_find(t, tok[i], len[i], &id));
        CHECK(id == i, "find gave %u want %zu", id, i);
    }
    CHECK_OK(mind4_tokenizer_add_special(t, (uint32_t)N + 5, "<|start|>", 9));
    CHECK_STATUS(mind4_tokenizer_add_special(t, (uint32_t)N + 6, "<|start|>", 9), MIND4_CORRUPT_FILE);
    CHECK_STATUS(mind4_tokenizer_add_special(t, 3, "<|x|>", 5), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_tokenizer_add_special(t, (uint32_t)N + 5, "<|y|>", 5), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_tokenizer_get_num_tokens(t, &ranked, &vocab));
    CHECK(vocab == N + 6, "vocab after a special: %u", vocab);
    const uint8_t* b;
    size_t n;
    CHECK_STATUS(mind4_tokenizer_get_token(t, (uint32_t)N + 1, &b, &n), MIND4_NOT_FOUND);
    uint32_t ids[4] = {300 % (uint32_t)N, (uint32_t)N + 5, 65, 10};
    size_t need = 0;
    uint8_t out[64];
    CHECK_STATUS(mind4_tokenizer_decode(t, ids, 4, out, 2, &need), MIND4_INVALID_ARGUMENT);
    CHECK(need == len[ids[0]] + 9 + 2, "decode size %zu", need);
    CHECK_OK(mind4_tokenizer_decode(t, ids, 4, out, sizeof out, &need));
    CHECK(memcmp(out + len[ids[0]], "<|start|>A\n", 11) == 0, "decoded bytes differ");
    ids[1] = (uint32_t)N + 2;
    CHECK_STATUS(mind4_tokenizer_decode(t, ids, 4, out, sizeof out, &need), MIND4_NOT_FOUND);
    uint32_t id;
    CHECK_STATUS(mind4_tokenizer_find(t, (const uint8_t*)"<|nope|>", 8, &id), MIND4_NOT_FOUND);
    mind4_tokenizer_retain(t);
    mind4_tokenizer_release(t);
    mind4_tokenizer_release(t);
    free(tok), free(len), free(order), free(text);
}

static void bad(const char* text, const char* needle) {
    mind4_tokenizer* t = NULL;
    mind4_status st = mind4_tokenizer_create_from_memory(text, strlen(text), &t);
    CHECK(st == MIND4_CORRUPT_FILE, "ranks %s: got %s", text, mind4_status_string(st));
    CHECK(strstr(mind4_last_error(), needle) != NULL, "ranks %s: message %s lacks %s", text, mind4_last_error(), needle);
    CHECK(t == NULL, "tokenizer_out set on failure");
}

static void test_bad_files(void) {
    bad("", "no tokens");
    bad("QQ== 0\nQg== 0\n", "repeated");           /* duplicate rank */
    bad("QQ== 0\nQQ== 1\n", "repeat");             /* duplicate token */
    bad("QQ== 0\nQg== 2\n", "0..N-1");             /* gap */
    bad("QQ= 0\n", "base64");
    bad("Q@== 0\n", "base64");
    bad("QR== 0\n", "base64");                     /* non-canonical padding bits */
    bad("QQ==0\n", "expected");
    bad("QQ== x\n", "expected");
    bad("QQ== 1 2\n", "expected");
    bad("QQ== 99999999999\n", "rank above");
    mind4_tokenizer* t;
    CHECK_STATUS(mind4_tokenizer_create_from_file("/nonexistent/ranks.tiktoken", &t), MIND4_NOT_FOUND);
}

static void test_repository_vocab(void) {
    const char* path = "../../tokenizer/encodings/mind4-8k/ranks.tiktoken";
    mind4_tokenizer* t = NULL;
    mind4_status st = mind4_tokenizer_create_from_file(path, &t);
    if (st == MIND4_NOT_FOUND) {
        printf("  (no %s: skipped)\n", path);
        return;
    }
    CHECK_OK(st);
    uint32_t ranked = 0;
    mind4_tokenizer_get_num_tokens(t, &ranked, NULL);
    CHECK(ranked > 256, "mind4-8k has %u ranked tokens", ranked);
    for (uint32_t b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        uint32_t id;
        CHECK_OK(mind4_tokenizer_find(t, &byte, 1, &id));
    }
    mind4_tokenizer_release(t);
}

int main(void) {
    test_init("test_tokenizer");
    for (int i = 0; i < 5; i++) test_random_vocab();
    test_bad_files();
    test_repository_vocab();
    return test_finish("test_tokenizer");
}
