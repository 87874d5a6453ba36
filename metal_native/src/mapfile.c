/* mapfile.c - see mapfile.h. POSIX mmap/opendir, or Win32 file mappings. */
#include "mapfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#if defined(_WIN32)
mind4_status m4_map_file(const char* path, m4_mapped_file* out) {
    memset(out, 0, sizeof *out);
    HANDLE f = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        return m4_fail(e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ? MIND4_NOT_FOUND : MIND4_IO_ERROR,
                       "%s: cannot open (Windows error %lu)", path, (unsigned long)e);
    }
    LARGE_INTEGER size;
    if (!GetFileSizeEx(f, &size)) {
        CloseHandle(f);
        return m4_fail(MIND4_IO_ERROR, "%s: cannot get the file size", path);
    }
    if ((unsigned long long)size.QuadPart > (unsigned long long)SIZE_MAX) {
        CloseHandle(f);
        return m4_fail(MIND4_UNSUPPORTED, "%s: file too large for this address space", path);
    }
    out->size = (size_t)size.QuadPart;
    if (out->size == 0) {
        CloseHandle(f);
        return MIND4_SUCCESS;
    }
    HANDLE m = CreateFileMappingA(f, NULL, PAGE_READONLY, 0, 0, NULL);
    CloseHandle(f);
    if (!m) return m4_fail(MIND4_IO_ERROR, "%s: cannot create a file mapping", path);
    void* p = MapViewOfFile(m, FILE_MAP_READ, 0, 0, 0);
    CloseHandle(m);
    if (!p) return m4_fail(MIND4_IO_ERROR, "%s: cannot map the file", path);
    out->data = (const unsigned char*)p;
    return MIND4_SUCCESS;
}

void m4_unmap_file(m4_mapped_file* file) {
    if (file && file->data) UnmapViewOfFile((void*)file->data);
    if (file) memset(file, 0, sizeof *file);
}
#else
mind4_status m4_map_file(const char* path, m4_mapped_file* out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return m4_fail(e == ENOENT ? MIND4_NOT_FOUND : MIND4_IO_ERROR, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return m4_fail(MIND4_IO_ERROR, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return m4_fail(MIND4_IO_ERROR, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
        close(fd);
        return m4_fail(MIND4_UNSUPPORTED, "%s: file too large for this address space", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size == 0) {
        close(fd);
        return MIND4_SUCCESS;
    }
    void* p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        out->size = 0;
        return m4_fail(MIND4_IO_ERROR, "%s: cannot map: %s", path, strerror(e));
    }
    out->data = (const unsigned char*)p;
    return MIND4_SUCCESS;
}

void m4_unmap_file(m4_mapped_file* file) {
    if (file && file->data) munmap((void*)file->data, file->size);
    if (file) memset(file, 0, sizeof *file);
}
#endif

mind4_status m4_read_file(const char* path, size_t max_size, char** data_out, size_t* size_out) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return m4_fail(e == ENOENT ? MIND4_NOT_FOUND : MIND4_IO_ERROR, "%s: cannot open: %s", path, strerror(e));
    }
    size_t cap = 4096, n = 0;
    char* buf = (char*)malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_size) {
                free(buf);
                fclose(f);
                return m4_fail(MIND4_CORRUPT_FILE, "%s: larger than the %zu bytes allowed", path, max_size);
            }
            size_t ncap = cap * 2 > max_size ? max_size : cap * 2;
            char* t = (char*)realloc(buf, ncap + 1);
            if (!t) {
                free(buf);
                fclose(f);
                return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", path);
            }
            buf = t;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return m4_fail(MIND4_IO_ERROR, "%s: read error", path);
    }
    buf[n] = '\0';
    *data_out = buf;
    *size_out = n;
    return MIND4_SUCCESS;
}

static int compare_names(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static bool ends_with(const char* s, const char* suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

mind4_status m4_list_dir(const char* dir, const char* suffix, char*** names_out, size_t* count_out) {
    size_t count = 0, cap = 0;
    char** names = NULL;
    mind4_status st = MIND4_SUCCESS;
#if defined(_WIN32)
    char pattern[4096];
    if ((size_t)snprintf(pattern, sizeof pattern, "%s\\*", dir) >= sizeof pattern) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "%s: path too long", dir);
    }
    WIN32_FIND_DATAA fd;
    HANDLE h = FindFirstFileA(pattern, &fd);
    if (h == INVALID_HANDLE_VALUE) return m4_fail(MIND4_NOT_FOUND, "%s: cannot list the directory", dir);
    do {
        if (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) continue;
        const char* name = fd.cFileName;
#else
    DIR* d = opendir(dir);
    if (!d) {
        int e = errno;
        return m4_fail(e == ENOENT ? MIND4_NOT_FOUND : MIND4_IO_ERROR, "%s: cannot open the directory: %s", dir,
                       strerror(e));
    }
    struct dirent* ent;
    while ((ent = readdir(d)) != NULL) {
        const char* name = ent->d_name;
#endif
        if (!ends_with(name, suffix) || name[0] == '.') continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char** t = (char**)realloc(names, ncap * sizeof *names);
            if (!t) {
                st = MIND4_OUT_OF_MEMORY;
                break;
            }
            names = t;
            cap = ncap;
        }
        size_t len = strlen(name);
        names[count] = (char*)malloc(len + 1);
        if (!names[count]) {
            st = MIND4_OUT_OF_MEMORY;
            break;
        }
        memcpy(names[count], name, len + 1);
        count++;
#if defined(_WIN32)
    } while (FindNextFileA(h, &fd));
    FindClose(h);
#else
    }
    closedir(d);
#endif
    if (st != MIND4_SUCCESS) {
        m4_free_names(names, count);
        return m4_fail(st, "%s: out of memory while listing", dir);
    }
    if (count > 1) qsort(names, count, sizeof *names, compare_names);
    *names_out = names;
    *count_out = count;
    return MIND4_SUCCESS;
}

void m4_free_names(char** names, size_t count) {
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}
