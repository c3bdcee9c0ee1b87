#include "CNanoSupport.h"
#include <errno.h>
#include <stdio.h>

/* Swift 6 refuses the C globals stdout and stderr (shared mutable state), and FileHandle's
   write traps on a failed write: these go through stdio, failures left to nf_stdout_error. */
void nf_write_stderr(const char *text) { fputs(text, stderr); }

void nf_write_stdout(const char *text) { fputs(text, stdout); }

int nf_stdout_error(void) {
    errno = 0;
    int flushed = fflush(stdout), code = errno;
    if (!ferror(stdout)) return 0;
    return flushed != 0 && code != 0 ? code : -1;
}
