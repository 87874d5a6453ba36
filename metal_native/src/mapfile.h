/* mapfile.h - read-only memory mapping of a whole file, and small file reads. */
#ifndef M4_MAPFILE_H
#define M4_MAPFILE_H

#include "common.h"

typedef struct m4_mapped_file {
    const unsigned char* data;
    size_t size;
    void* handle_; /* platform state */
} m4_mapped_file;

/* Map path read-only. An empty file maps to data=NULL, size=0. */
mind4_status m4_map_file(const char* path, m4_mapped_file* out);
void m4_unmap_file(m4_mapped_file* file);

/* Read a whole (small) file into a malloc'd, NUL-terminated buffer. */
mind4_status m4_read_file(const char* path, size_t max_size, char** data_out, size_t* size_out);

/* Names (not paths) of the regular files in dir whose names end with suffix,
 * sorted bytewise. Free with m4_free_names. */
mind4_status m4_list_dir(const char* dir, const char* suffix, char*** names_out, size_t* count_out);
void m4_free_names(char** names, size_t count);

#endif
