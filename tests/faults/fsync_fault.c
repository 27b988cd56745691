/*
 * An LD_PRELOAD shim for tests/disk_faults.rs: while the file named by the environment
 * variable TIDEKV_FSYNC_FAULT_MARKER exists, fsync(2) and fdatasync(2) fail with EIO without
 * calling the kernel -- what a disk that cannot write back its cache reports. Otherwise both
 * pass straight through to libc.
 *
 * Two counters let the process under test see that the shim is in effect (a flush that
 * "succeeds" because the shim was never loaded must fail the test, not pass it):
 *   tidekv_shim_failed  calls answered with EIO
 *   tidekv_shim_passed  calls passed to libc that succeeded
 * Read them with dlsym(RTLD_DEFAULT, "...").
 *
 * Built by the test at run time: cc -shared -fPIC -o libtidekv_fsync_fault.so fsync_fault.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

unsigned long tidekv_shim_failed = 0;
unsigned long tidekv_shim_passed = 0;

typedef int (*sync_fn)(int);

static int fault_on(void) {
    const char *marker = getenv("TIDEKV_FSYNC_FAULT_MARKER");
    int saved = errno;
    int on = marker != NULL && marker[0] != '\0' && access(marker, F_OK) == 0;
    errno = saved;
    return on;
}

static int call(const char *name, sync_fn *slot, int fd) {
    if (fault_on()) {
        __atomic_add_fetch(&tidekv_shim_failed, 1, __ATOMIC_SEQ_CST);
        errno = EIO;
        return -1;
    }
    sync_fn real = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (real == NULL) {
        real = (sync_fn)dlsym(RTLD_NEXT, name);
        if (real == NULL) {
            errno = ENOSYS;
            return -1;
        }
        __atomic_store_n(slot, real, __ATOMIC_RELEASE);
    }
    int rc = real(fd);
    if (rc == 0) {
        __atomic_add_fetch(&tidekv_shim_passed, 1, __ATOMIC_SEQ_CST);
    }
    return rc;
}

int fsync(int fd) {
    static sync_fn real = NULL;
    return call("fsync", &real, fd);
}

int fdatasync(int fd) {
    static sync_fn real = NULL;
    return call("fdatasync", &real, fd);
}
