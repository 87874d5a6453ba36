/* run_corpus.c - regression driver: feed every file of the given
 * directories (the fuzz corpus and crash reproducers) to a fuzz target
 * (FUZZ_TARGET, default fuzz_checkpoint.c),
 * built without libFuzzer so it runs as an ordinary ctest under sanitizers. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_TARGET
#define FUZZ_TARGET "fuzz_checkpoint.c"
#endif
#include FUZZ_TARGET

static int run_dir(const char* dir, size_t* count) {
    DIR* d = opendir(dir);
    if (!d) return 0; /* an absent directory is an empty one */
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
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
        size_t got = fread(buf, 1, (size_t)n, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, got);
        free(buf);
        (*count)++;
    }
    closedir(d);
    return 0;
}

int main(int argc, char** argv) {
    size_t count = 0;
    for (int i = 1; i < argc; i++) run_dir(argv[i], &count);
    printf("run_corpus: %zu inputs ran without a sanitizer finding\n", count);
    return count > 0 ? 0 : 1;
}
