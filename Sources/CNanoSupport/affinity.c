#define _GNU_SOURCE
#include "CNanoSupport.h"
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif

#ifdef __linux__
#include <pthread.h>
static int allowed[CPU_SETSIZE];
static int allowedCount = 0;
static pthread_once_t allowedOnce = PTHREAD_ONCE_INIT;
/// The CPUs the process may use, read once (before any thread is pinned).
static void readAllowed(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
    for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &set)) allowed[allowedCount++] = c;
}
#endif

int nf_pin_current_thread(int index) {
#ifdef __linux__
    pthread_once(&allowedOnce, readAllowed);
    if (allowedCount == 0 || index < 0) return -1;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(allowed[index % allowedCount], &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -1;
#else
    (void)index;
    return -1;
#endif
}

int nf_unpin_current_thread(void) {
#ifdef __linux__
    pthread_once(&allowedOnce, readAllowed);
    if (allowedCount == 0) return -1;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int k = 0; k < allowedCount; k++) CPU_SET(allowed[k], &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -1;
#else
    return -1;
#endif
}

int nf_available_cpus(void) {
#ifdef __linux__
    pthread_once(&allowedOnce, readAllowed);
    if (allowedCount > 0) return allowedCount;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
