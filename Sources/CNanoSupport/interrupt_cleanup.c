#include "CNanoSupport.h"
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Files (and folders of files) to remove when the process is stopped by SIGINT, SIGTERM or SIGHUP:
   the temporary names outputs are written under before their rename. A slot is claimed with a
   compare-and-swap, filled, then published (state 2: a file, 3: a folder), so the handler only
   ever reads whole paths; everything it calls (unlink, open, getdents through readdir on glibc,
   rmdir, sigaction, raise) is what a handler may call in practice on Linux and macOS. */
#define NF_CLEANUP_SLOTS 128
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
    return -1;  /* every slot taken: the file is left as before (segment's next run removes it) */
}

void nf_cleanup_unregister(int slot) {
    if (slot >= 0 && slot < NF_CLEANUP_SLOTS) __atomic_store_n(&cleanup_state[slot], 0, __ATOMIC_RELEASE);
}

static void remove_folder(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        int fd = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlinkat(fd, e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(path);
}

static void cleanup_on_signal(int sig) {
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
        sigaction(signals[k], &sa, NULL);
    }
}
