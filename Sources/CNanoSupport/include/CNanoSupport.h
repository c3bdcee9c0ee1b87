#ifndef NANOFIND_CNANOSUPPORT_H
#define NANOFIND_CNANOSUPPORT_H
/// Pins the calling thread to one CPU (Linux sched_setaffinity). Returns 0 on success, -1 where
/// pinning is unavailable (macOS) or refused; callers treat that as "not pinned" and go on.
int nf_pin_current_thread(int cpu);
/// Number of CPUs this process may run on (its affinity mask), or the online count.
int nf_available_cpus(void);
#endif
