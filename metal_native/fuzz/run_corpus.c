/* run_corpus.c - regression driver: feed every file of the given
 * directories (the fuzz corpus and crash reproducers) to a fuzz target
 * (FUZZ_TARGET, default fuzz_checkpoint.c),
 * built without libFuzzer so it runs as an ordinary ctest under sanitizers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapfile.h" /* m4_list_dir: the library's portable directory listing */

#ifndef FUZZ_TARGET
#define FUZZ_TARGET "fuzz_checkpoint.c"
#endif
#include FUZZ_TARGET

static int run_dir(const char* dir, size_t* count) {
    char** names = NULL;
    size_t n_names = 0;
    if (m4_list_dir(dir, "", &names, &n_names) != MIND4_SUCCESS) return 0; /* an absent directory is an empty one */
    for (size_t i = 0; i < n_names; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE* f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        if (n < 0) {
            fclose(f);
            continue;
        }
        unsigned char* buf = (unsigned char*)malloc((size_t)n + 1);
        size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
        fclose(f);
        if (!buf) continue;
        LLVMFuzzerTestOneInput(buf, got);
        free(buf);
        (*count)++;
    }
    m4_free_names(names, n_names);
    return 0;
}

int main(int argc, char** argv) {
    size_t count = 0;
    for (int i = 1; i < argc; i++) run_dir(argv[i], &count);
    printf("run_corpus: %zu inputs ran without a sanitizer finding\n", count);
    return count > 0 ? 0 : 1;
}
