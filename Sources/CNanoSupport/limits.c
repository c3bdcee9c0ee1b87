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
