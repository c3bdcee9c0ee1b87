#include "CNanoSupport.h"
#include <sys/resource.h>

int nf_limit_address_space(unsigned long long bytes) {
    struct rlimit current;
    if (getrlimit(RLIMIT_AS, &current) != 0) return -1;
    /* Never raise a limit the process already has. */
    if (current.rlim_cur != RLIM_INFINITY && (unsigned long long)current.rlim_cur <= bytes) return 0;
    struct rlimit limit = { (rlim_t)bytes, current.rlim_max };
    if (current.rlim_max != RLIM_INFINITY && (unsigned long long)current.rlim_max < bytes) limit.rlim_cur = current.rlim_max;
    return setrlimit(RLIMIT_AS, &limit);
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int nf_reuse_freed_memory(unsigned long long largest) {
#if defined(__GLIBC__)
    /* Blocks up to `largest` from the heap instead of a fresh mapping each (glibc's own limit
       for that rises only to 32 MiB), and the heap's free memory kept instead of trimmed. */
    if (largest > 0x7fffffffULL) largest = 0x7fffffffULL;
    if (mallopt(M_MMAP_THRESHOLD, (int)largest) != 1) return -1;
    if (mallopt(M_TRIM_THRESHOLD, 0x7fffffff) != 1) return -1;
    return 0;
#else
    (void)largest;
    return -1;
#endif
}
