#ifndef NANOFIND_CNANOSUPPORT_H
#define NANOFIND_CNANOSUPPORT_H
#include <stddef.h>
/// Pins the calling thread to the index-th CPU the process was allowed to use when it started
/// (Linux sched_setaffinity; the allowed set is read once, before any pinning). Returns 0 on
/// success, -1 where pinning is unavailable (macOS) or refused; callers then go on unpinned.
int nf_pin_current_thread(int index);
/// Lets the calling thread run on every CPU the process was allowed at start again (a thread
/// inherits the mask of the thread that created it, so threads started from a pinned one would
/// all share its CPU). 0 on success, -1 where unavailable.
int nf_unpin_current_thread(void);
/// Number of CPUs this process may run on (its affinity mask), or the online count.
int nf_available_cpus(void);
/// Lowers this process's address-space limit (RLIMIT_AS) to `bytes`, never raising it: 0 on
/// success. The child that reads an HDF5 file sets one, so that a corrupt file's absurd
/// allocation inside libhdf5 fails at once instead of taking the machine's memory.
int nf_limit_address_space(unsigned long long bytes);
/// The memory another process of this user holds: on macOS its physical footprint
/// (`proc_pid_rusage`), where no address-space limit can be set (setrlimit(RLIMIT_AS) fails
/// there), so the parent of the HDF5 reading child watches it instead; -1 elsewhere (Linux
/// bounds the child's address space) or when it cannot be read.
long long nf_process_footprint(int pid);
/// The CPU's model name where the system says it (macOS: `machdep.cpu.brand_string`, e.g.
/// "Apple M2"), written into `buffer` with its terminating zero: 0 on success, -1 elsewhere
/// (Linux: /proc/cpuinfo names it).
int nf_cpu_brand(char *buffer, size_t size);
/// glibc only: memory blocks up to `largest` bytes come from the heap, one for all threads, and
/// freed memory stays with the process, so the next image of a batch reuses the last one's
/// pages instead of faulting in (and zeroing) fresh ones. 0 on success, -1 where not available (macOS: its
/// allocator already keeps freed regions for a while).
int nf_reuse_freed_memory(unsigned long long largest);
/// Creates (or truncates) a file for writing around the page cache (Linux `O_DIRECT`): its
/// descriptor, or -1 with errno set (EINVAL where the file system or the platform has no direct
/// writes). Buffers, offsets and lengths written to it must be aligned to the device's blocks.
int nf_create_direct(const char *path);

/// `value` with `digits` decimals as printf's "%.*f" writes it, in the C locale ("." for the
/// decimal point whatever the process has set): the characters written (not counting the NUL),
/// or what would have been written had `size` been large enough.
int nf_format_fixed(char *buffer, size_t size, double value, int digits);

/// Atomics for the thread pool's work counter (portable to macOS 13, unlike Swift's Atomic).
static inline long nf_atomic_fetch_add(long *p, long v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline long nf_atomic_load(const long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void nf_atomic_store(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/// A spin-wait hint.
static inline void nf_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Non-temporal (cache-bypassing) vector stores, for outputs larger than the last-level cache:
/// a plain store first reads the line it writes, and the data would only evict what the next
/// kernel reads. `p` must be aligned to the vector's size. Other threads may read the data only
/// after the writer's `nf_store_fence`.
typedef float nf_float16 __attribute__((ext_vector_type(16)));
typedef float nf_float8 __attribute__((ext_vector_type(8)));
typedef float nf_float4 __attribute__((ext_vector_type(4)));
static inline void nf_stream_store16(float *p, nf_float16 v) { __builtin_nontemporal_store(v, (nf_float16 *)p); }
static inline void nf_stream_store8(float *p, nf_float8 v) { __builtin_nontemporal_store(v, (nf_float8 *)p); }
static inline void nf_stream_store4(float *p, nf_float4 v) { __builtin_nontemporal_store(v, (nf_float4 *)p); }
static inline void nf_store_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
/// Software prefetch of the cache line holding p, for reading, into every cache level (a hint:
/// never faults, whatever p is).
static inline void nf_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/// p, as a value the optimiser cannot relate to any other address (an empty asm that "may
/// change" it): loads through it stay separate loads instead of being merged with loads at
/// neighbouring addresses into shuffles.
static inline const float *nf_opaque(const float *p) { __asm__("" : "+r"(p)); return p; }

/* Text on stderr (unbuffered) or stdout (through the buffer print uses), failures ignored. */
void nf_write_stderr(const char *text);
void nf_write_stdout(const char *text);
/* 0 when everything written to stdout got there (flushed now), else the errno of the failure
   (-1 when a write failed earlier and its errno is gone). */
int nf_stdout_error(void);
/* Temporary files (folder != 0: a folder of files) removed if SIGINT, SIGTERM or SIGHUP stops the
   process once nf_cleanup_install has run: register returns the slot to unregister once the
   path is renamed or removed (-1: not registered, the path too long or every slot taken). */
int nf_cleanup_register(const char *path, int folder);
void nf_cleanup_unregister(int slot);
void nf_cleanup_install(void);
#endif
