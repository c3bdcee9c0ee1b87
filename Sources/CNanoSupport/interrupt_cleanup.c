#include "CNanoSupport.h"
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

/* Files (and folders of files) to remove when the process is stopped by SIGINT, SIGTERM or SIGHUP:
   the temporary names outputs are written under before their rename. A slot is claimed with a
   compare-and-swap, filled, then published (state 2: a file, 3: a folder), so the handler only
   ever reads whole paths; everything it calls is async-signal-safe (unlink, open, unlinkat,
   close, rmdir, sigaction, raise, and on Linux the getdents64 system call into a static buffer:
   opendir would allocate, and a signal landing inside malloc would deadlock on its lock). Where
   there is no getdents64 (macOS), a folder's files are left (a $TMPDIR folder by hand; an output
   folder's by the next command writing there). Slots: a few per file being written at once (simulate --jobs 256 holds
   about a thousand). */
#define NF_CLEANUP_SLOTS 2048
#define NF_CLEANUP_PATH 4096
static char cleanup_paths[NF_CLEANUP_SLOTS][NF_CLEANUP_PATH];
static int cleanup_state[NF_CLEANUP_SLOTS];

int nf_cleanup_register(const char *path, int folder) {
    if (strlen(path) >= NF_CLEANUP_PATH) return -1;
    for (int i = 0; i < NF_CLEANUP_SLOTS; i++) {
        int expected = 0;
        if (__atomic_compare_exchange_n(&cleanup_state[i], &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            strcpy(cleanup_paths[i], path);
            __atomic_store_n(&cleanup_state[i], folder ? 3 : 2, __ATOMIC_RELEASE);
            return i;
        }
    }
    return -1;  /* every slot taken: the file is left as before (the next command writing into its folder removes it) */
}

void nf_cleanup_unregister(int slot) {
    if (slot >= 0 && slot < NF_CLEANUP_SLOTS) __atomic_store_n(&cleanup_state[slot], 0, __ATOMIC_RELEASE);
}

static void remove_folder(const char *path) {
#if defined(__linux__) && defined(SYS_getdents64)
    static char buffer[8192];
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        long n;
        while ((n = syscall(SYS_getdents64, fd, buffer, sizeof buffer)) > 0) {
            for (long at = 0; at + 19 < n;) {
                /* struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name */
                unsigned short length;
                memcpy(&length, buffer + at + 16, sizeof length);
                if (length < 20 || at + length > n) break;
                const char *name = buffer + at + 19;
                if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) unlinkat(fd, name, 0);
                at += length;
            }
        }
        close(fd);
    }
#endif
    rmdir(path);
}

static int cleaning = 0;

static void cleanup_on_signal(int sig) {
    /* Once: a second signal on another thread meanwhile (SIGHUP and SIGTERM at a logout) waits
       for the first handler's end, which ends the process. */
    if (__atomic_exchange_n(&cleaning, 1, __ATOMIC_ACQ_REL)) { for (;;) pause(); }
    for (int i = 0; i < NF_CLEANUP_SLOTS; i++) {
        int state = __atomic_load_n(&cleanup_state[i], __ATOMIC_ACQUIRE);
        if (state == 2) unlink(cleanup_paths[i]);
        else if (state == 3) remove_folder(cleanup_paths[i]);
    }
    /* Then end as the signal would have: default action, raised again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

void nf_cleanup_install(void) {
    int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (unsigned k = 0; k < sizeof signals / sizeof signals[0]; k++) {
        struct sigaction old;
        if (sigaction(signals[k], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue;  /* nohup's stays */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = cleanup_on_signal;
        sigemptyset(&sa.sa_mask);
        for (unsigned j = 0; j < sizeof signals / sizeof signals[0]; j++) sigaddset(&sa.sa_mask, signals[j]);
        sigaction(signals[k], &sa, NULL);
    }
}
