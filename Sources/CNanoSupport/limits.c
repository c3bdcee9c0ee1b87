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

#if defined(__APPLE__)
#include <libproc.h>
#include <sys/sysctl.h>

long long nf_process_footprint(int pid) {
    struct rusage_info_v4 info;
    if (proc_pid_rusage(pid, RUSAGE_INFO_V4, (rusage_info_t *)&info) != 0) return -1;
    return (long long)info.ri_phys_footprint;
}

int nf_cpu_brand(char *buffer, size_t size) {
    size_t length = size;
    if (size == 0 || sysctlbyname("machdep.cpu.brand_string", buffer, &length, NULL, 0) != 0) return -1;
    buffer[size - 1] = 0;
    return 0;
}
#else
long long nf_process_footprint(int pid) {
    (void)pid;
    return -1;
}

int nf_cpu_brand(char *buffer, size_t size) {
    (void)buffer;
    (void)size;
    return -1;
}
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int nf_reuse_freed_memory(unsigned long long largest) {
#if defined(__GLIBC__)
    /* Freed memory kept instead of trimmed, and blocks up to `largest` from the heap instead of
       a fresh mapping each (glibc's own limit for that rises only to 32 MiB). glibc refuses
       thresholds above half its largest heap in some versions: then 32 MiB. */
    int kept = mallopt(M_TRIM_THRESHOLD, 0x7fffffff) == 1;
    /* One arena for every thread: a block that a job's thread (not the main one) asks for would
       otherwise come from that thread's own arena, whose heaps hold at most 64 MiB each, so an
       image's larger arrays would be fresh mappings there whatever the threshold below. */
    kept = kept && mallopt(M_ARENA_MAX, 1) == 1;
    if (largest > 0x7fffffffULL) largest = 0x7fffffffULL;
    int heap = mallopt(M_MMAP_THRESHOLD, (int)largest) == 1 || mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
    return kept && heap ? 0 : -1;
#else
    (void)largest;
    return -1;
#endif
}
