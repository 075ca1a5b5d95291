/* powerloss.c: an LD_PRELOAD shim that makes SIGKILL of a process look like losing the machine.
 *
 * On a real machine, write() puts bytes in the kernel's page cache and returns; only fsync() or
 * fdatasync() (or the kernel's writeback, after about 30 s) puts them on the disk. A power cut
 * loses what is only in the page cache. A plain SIGKILL loses nothing written: the page cache
 * belongs to the kernel and survives the process. This shim moves the page cache into the process
 * for the files it watches, so that killing the process loses exactly what a power cut would:
 *
 *   - write/writev/pwrite to a watched file keep the bytes in this process's memory (per inode, with
 *     the file offset they belong at) and return as the kernel would: the file is not touched;
 *   - fsync/fdatasync on any descriptor of that inode writes the kept bytes to the file at their
 *     offsets, then syncs it for real: from then on they survive a kill;
 *   - close keeps the bytes (the page cache outlives a descriptor; a later fsync of the inode still
 *     flushes them); rename keeps them too (same inode); unlink, a rename over the file and O_TRUNC
 *     drop them, as they do to dirty pages; ftruncate cuts them at the new length;
 *   - lseek answers from the file's size including the kept bytes.
 *
 * Metadata (create, rename, unlink, truncate) is taken as durable at once: Redis fsyncs the
 * directory after each rename it relies on, and a journaling file system orders these anyway.
 * The kernel's periodic writeback is not simulated: everything unsynced is lost, which is what a
 * power cut within about 30 s of the writes loses (the lab's experiments are shorter).
 *
 * Watched files: regular files opened for writing through open/open64/openat/openat64/creat
 * whose path lies under the directory in REDAI_LAB_POWERLOSS_DIR. Files opened by fopen are not
 * seen (glibc opens them internally), nor is their stdio output: Redis writes its RDB files that
 * way and fsyncs them before renaming them into place, so they are durable either way. Reads of
 * a watched file by the same process see the disk, not the kept bytes (Redis never reads its
 * AOF while appending to it). Descriptors >= MAX_FDS are not watched.
 *
 * What Redis 8.2 does with its files (strace -f, appendonly yes): the AOF increment is opened
 * O_WRONLY|O_CREAT|O_APPEND, appended with write() and synced with fdatasync() (main thread under
 * appendfsync always, the bio thread under everysec, never under no); the manifest is opened
 * O_TRUNC under a temporary name, written, fdatasync'ed, renamed over appendonly.aof.manifest,
 * and the directory fdatasync'ed; the AOF base and dump.rdb are written through stdio as
 * temp-*.{aof,rdb}, fsync'ed, then renamed into place; an old increment is fdatasync'ed by the bio
 * thread before it is closed, and unlinked after a rewrite. Redis 7.0.15 and Valkey 9.1 make the
 * same calls.
 *
 * Build: cc -shared -fPIC -O2 -o powerloss.so powerloss.c -ldl -pthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_INODES 256

struct piece { off_t offset; size_t length; size_t at; /* into inode.data */ };

struct inode {
    int used;
    dev_t dev;
    ino_t ino;
    off_t size;           /* the file's size as the process sees it: disk plus kept bytes */
    struct piece *pieces; /* kept writes, in the order they were made */
    size_t n_pieces, cap_pieces;
    char *data;
    size_t data_len, data_cap;
};

struct watched_fd { int inode; /* index + 1; 0: not watched */ int append; off_t position; };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct watched_fd fds[MAX_FDS];
static struct inode inodes[MAX_INODES];
static char watched_dir[PATH_MAX];
static size_t watched_dir_len;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_creat)(const char *, mode_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static off_t (*real_lseek)(int, off_t, int);
static off_t (*real_lseek64)(int, off_t, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);

static void lock_for_fork(void) { pthread_mutex_lock(&lock); }
static void unlock_after_fork(void) { pthread_mutex_unlock(&lock); }

static void resolve(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_creat = dlsym(RTLD_NEXT, "creat");
    real_write = dlsym(RTLD_NEXT, "write");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_lseek = dlsym(RTLD_NEXT, "lseek");
    real_lseek64 = dlsym(RTLD_NEXT, "lseek64");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_renameat = dlsym(RTLD_NEXT, "renameat");
    const char *dir = getenv("REDAI_LAB_POWERLOSS_DIR");
    if (dir && realpath(dir, watched_dir)) watched_dir_len = strlen(watched_dir);
    /* A fork while another thread holds the lock (Redis forks for BGSAVE while its bio thread may
     * be in fdatasync) would leave the child's copy locked for ever. */
    pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

/* Called first by every wrapper: a call may come before the constructor ran (from another
 * library's constructor). */
static void init(void) { pthread_once(&resolved, resolve); }

__attribute__((constructor)) static void init_at_load(void) { init(); }

static struct inode *inode_of(int fd) {
    if (fd < 0 || fd >= MAX_FDS || fds[fd].inode == 0) return NULL;
    return &inodes[fds[fd].inode - 1];
}

static void forget_inode(struct inode *node) {
    free(node->pieces);
    free(node->data);
    memset(node, 0, sizeof *node);
}

/* Drop the kept bytes of the file at `path` when its last name goes (unlink, rename over it). */
static void forget_path(int dirfd, const char *path) {
    struct stat st;
    if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_nlink > 1) return;
    for (int i = 0; i < MAX_INODES; i++)
        if (inodes[i].used && inodes[i].dev == st.st_dev && inodes[i].ino == st.st_ino) {
            for (int fd = 0; fd < MAX_FDS; fd++)
                if (fds[fd].inode == i + 1) fds[fd].inode = 0;
            forget_inode(&inodes[i]);
        }
}

static void watch(int fd, int flags) {
    if (fd < 0 || fd >= MAX_FDS || watched_dir_len == 0 || (flags & O_ACCMODE) == O_RDONLY) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    if (strncmp(path, watched_dir, watched_dir_len) != 0
        || (path[watched_dir_len] != '/' && path[watched_dir_len] != '\0')) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    int found = -1, free_slot = -1;
    for (int i = 0; i < MAX_INODES; i++) {
        if (inodes[i].used && inodes[i].dev == st.st_dev && inodes[i].ino == st.st_ino) found = i;
        else if (!inodes[i].used && free_slot < 0) free_slot = i;
    }
    if (found >= 0 && (flags & O_TRUNC)) {  /* truncation drops dirty pages too */
        inodes[found].n_pieces = inodes[found].data_len = 0;
        inodes[found].size = 0;
    }
    if (found < 0) {
        if (free_slot < 0) return;  /* too many files: this one is written through */
        found = free_slot;
        inodes[found].used = 1;
        inodes[found].dev = st.st_dev;
        inodes[found].ino = st.st_ino;
        inodes[found].size = st.st_size;
    }
    fds[fd].inode = found + 1;
    fds[fd].append = (flags & O_APPEND) != 0;
    fds[fd].position = 0;
}

static int keep(struct inode *node, off_t offset, const void *buf, size_t length) {
    if (node->n_pieces == node->cap_pieces) {
        size_t cap = node->cap_pieces ? node->cap_pieces * 2 : 64;
        struct piece *grown = realloc(node->pieces, cap * sizeof *grown);
        if (!grown) return -1;
        node->pieces = grown;
        node->cap_pieces = cap;
    }
    if (node->data_len + length > node->data_cap) {
        size_t cap = node->data_cap ? node->data_cap : 65536;
        while (cap < node->data_len + length) cap *= 2;
        char *grown = realloc(node->data, cap);
        if (!grown) return -1;
        node->data = grown;
        node->data_cap = cap;
    }
    memcpy(node->data + node->data_len, buf, length);
    node->pieces[node->n_pieces++] = (struct piece){offset, length, node->data_len};
    node->data_len += length;
    if (offset + (off_t)length > node->size) node->size = offset + (off_t)length;
    return 0;
}

/* Write the kept bytes of `fd`'s inode to the file, through a descriptor of our own without
 * O_APPEND (Linux appends a pwrite on an O_APPEND descriptor wherever its offset says). */
static int flush(int fd) {
    struct inode *node = inode_of(fd);
    if (!node || node->n_pieces == 0) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int out = real_open(link, O_WRONLY | O_CLOEXEC);
    if (out < 0) return -1;
    for (size_t i = 0; i < node->n_pieces; i++) {
        struct piece *p = &node->pieces[i];
        size_t done = 0;
        while (done < p->length) {
            ssize_t n = real_pwrite(out, node->data + p->at + done, p->length - done, p->offset + (off_t)done);
            if (n < 0) { if (errno == EINTR) continue; real_close(out); return -1; }
            done += (size_t)n;
        }
    }
    real_close(out);
    node->n_pieces = node->data_len = 0;
    return 0;
}

static ssize_t kept_write(int fd, const void *buf, size_t count, off_t offset, int positional) {
    struct inode *node = inode_of(fd);
    if (!positional) offset = fds[fd].append ? node->size : fds[fd].position;
    if (keep(node, offset, buf, count) != 0) { errno = ENOSPC; return -1; }
    if (!positional) fds[fd].position = offset + (off_t)count;
    return (ssize_t)count;
}

/* The mode argument exists only with O_CREAT or O_TMPFILE (whose bits include O_DIRECTORY's). */
#define OPEN_MODE(flags, mode) \
    mode_t mode = 0; \
    if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) { \
        va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); \
    }

static int opened(int fd, int flags) {
    if (fd >= 0) { pthread_mutex_lock(&lock); watch(fd, flags); pthread_mutex_unlock(&lock); }
    return fd;
}

int open(const char *path, int flags, ...) {
    init(); OPEN_MODE(flags, mode);
    return opened(real_open(path, flags, mode), flags);
}

int open64(const char *path, int flags, ...) {
    init(); OPEN_MODE(flags, mode);
    return opened(real_open64(path, flags, mode), flags);
}

int openat(int dirfd, const char *path, int flags, ...) {
    init(); OPEN_MODE(flags, mode);
    return opened(real_openat(dirfd, path, flags, mode), flags);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    init(); OPEN_MODE(flags, mode);
    return opened(real_openat64(dirfd, path, flags, mode), flags);
}

int creat(const char *path, mode_t mode) {
    init();
    return opened(real_creat(path, mode), O_WRONLY | O_CREAT | O_TRUNC);
}

ssize_t write(int fd, const void *buf, size_t count) {
    init();
    pthread_mutex_lock(&lock);
    ssize_t n = inode_of(fd) ? kept_write(fd, buf, count, 0, 0) : -2;
    pthread_mutex_unlock(&lock);
    return n == -2 ? real_write(fd, buf, count) : n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    init();
    pthread_mutex_lock(&lock);
    ssize_t total = -2;
    if (inode_of(fd)) {
        total = 0;
        for (int i = 0; i < iovcnt && total >= 0; i++) {
            ssize_t n = kept_write(fd, iov[i].iov_base, iov[i].iov_len, 0, 0);
            total = n < 0 ? -1 : total + n;
        }
    }
    pthread_mutex_unlock(&lock);
    return total == -2 ? real_writev(fd, iov, iovcnt) : total;
}

static ssize_t positional_write(ssize_t (*real)(int, const void *, size_t, off_t),
                                int fd, const void *buf, size_t count, off_t offset) {
    pthread_mutex_lock(&lock);
    ssize_t n = inode_of(fd) ? kept_write(fd, buf, count, offset, 1) : -2;
    pthread_mutex_unlock(&lock);
    return n == -2 ? real(fd, buf, count, offset) : n;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    init();
    return positional_write(real_pwrite, fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    init();
    return positional_write(real_pwrite64, fd, buf, count, offset);
}

static int synced(int (*real)(int), int fd) {
    pthread_mutex_lock(&lock);
    int flushed = flush(fd);
    pthread_mutex_unlock(&lock);
    return flushed != 0 ? -1 : real(fd);
}

int fsync(int fd) { init(); return synced(real_fsync, fd); }

int fdatasync(int fd) { init(); return synced(real_fdatasync, fd); }

int close(int fd) {
    init();
    pthread_mutex_lock(&lock);
    if (fd >= 0 && fd < MAX_FDS) fds[fd].inode = 0;  /* the kept bytes stay with the inode */
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

static int truncated(int (*real)(int, off_t), int fd, off_t length) {
    pthread_mutex_lock(&lock);
    struct inode *node = inode_of(fd);
    if (node) {
        size_t kept = 0;
        for (size_t i = 0; i < node->n_pieces; i++) {
            struct piece p = node->pieces[i];
            if (p.offset >= length) continue;
            if (p.offset + (off_t)p.length > length) p.length = (size_t)(length - p.offset);
            node->pieces[kept++] = p;
        }
        node->n_pieces = kept;
        node->size = length;
    }
    pthread_mutex_unlock(&lock);
    return real(fd, length);
}

int ftruncate(int fd, off_t length) { init(); return truncated(real_ftruncate, fd, length); }

int ftruncate64(int fd, off_t length) { init(); return truncated(real_ftruncate64, fd, length); }

static off_t seeked(off_t (*real)(int, off_t, int), int fd, off_t offset, int whence) {
    pthread_mutex_lock(&lock);
    struct inode *node = inode_of(fd);
    off_t result = -2;
    if (node && (whence == SEEK_SET || whence == SEEK_CUR || whence == SEEK_END)) {
        off_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? fds[fd].position : node->size;
        if (base + offset < 0) { errno = EINVAL; result = -1; }
        else result = fds[fd].position = base + offset;
    }
    pthread_mutex_unlock(&lock);
    return result == -2 ? real(fd, offset, whence) : result;
}

off_t lseek(int fd, off_t offset, int whence) { init(); return seeked(real_lseek, fd, offset, whence); }

off_t lseek64(int fd, off_t offset, int whence) { init(); return seeked(real_lseek64, fd, offset, whence); }

int unlink(const char *path) {
    init();
    pthread_mutex_lock(&lock);
    forget_path(AT_FDCWD, path);
    pthread_mutex_unlock(&lock);
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags) {
    init();
    pthread_mutex_lock(&lock);
    if (!(flags & AT_REMOVEDIR)) forget_path(dirfd, path);
    pthread_mutex_unlock(&lock);
    return real_unlinkat(dirfd, path, flags);
}

int rename(const char *from, const char *to) {
    init();
    pthread_mutex_lock(&lock);
    forget_path(AT_FDCWD, to);
    pthread_mutex_unlock(&lock);
    return real_rename(from, to);
}

int renameat(int fromdir, const char *from, int todir, const char *to) {
    init();
    pthread_mutex_lock(&lock);
    forget_path(todir, to);
    pthread_mutex_unlock(&lock);
    return real_renameat(fromdir, from, todir, to);
}
