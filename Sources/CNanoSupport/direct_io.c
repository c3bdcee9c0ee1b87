#define _GNU_SOURCE
#include "CNanoSupport.h"
#include <errno.h>
#include <fcntl.h>

int nf_create_direct(const char *path) {
#if defined(__linux__) && defined(O_DIRECT)
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
#else
    (void)path;
    errno = EINVAL;
    return -1;
#endif
}
