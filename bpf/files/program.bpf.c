/* files: read and write bytes and operations per file and process, like bcc's filetop,
 * counted in the kernel from syscall tracepoints only.
 *
 * There is no struct file to read, so the tracer keeps its own table from file
 * descriptors to paths, keyed by (tgid, fd): an open(2)/openat(2)/openat2(2) that
 * returns an fd records the path the caller passed (read from user memory at the exit,
 * still valid), dup/dup2/dup3 and fcntl(F_DUPFD[_CLOEXEC]) copy an entry, close(2)
 * removes it, fcntl(F_SETFD) and ioctl(FIOCLEX/FIONCLEX) change its close-on-exec flag.
 * read/write and their p-, v- and pv[2]- variants note the fd at entry and count the
 * bytes returned (> 0) at exit.
 *
 * An entry is only trusted while it can still be the same open file:
 *   - each process gets a generation (a timestamp) at its first tracked open, forgotten
 *     when its thread-group leader exits: entries of an older process with a reused pid
 *     do not match;
 *   - each process counts its execs: entries opened with O_CLOEXEC (or marked so with
 *     fcntl(F_SETFD) or ioctl(FIOCLEX)) before the latest exec do not match.
 * An fd with no trusted entry (opened before the tracer started, inherited across fork,
 * a socket, a pipe, an eventfd, ...) has no path. Such fds are counted only with
 * -a/--all-files, with an empty path and the fd number as the "fd" label.
 *
 * Without -a, paths under /proc, /sys and /dev are left out as well (bcc's filetop
 * counts regular files only; the file type is in the inode, which a tracer may not read).
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#ifndef ALL_FILES
#define ALL_FILES 0
#endif

#define PATH_LEN 256
#define O_CLOEXEC 02000000
#define F_DUPFD 0
#define F_SETFD 2
#define F_DUPFD_CLOEXEC 1030
#define FD_CLOEXEC 1
#define FIONCLEX 0x5450
#define FIOCLEX 0x5451

enum { OP_READ = 0, OP_WRITE = 1 };

/* preadv2/pwritev2's flags argument has a kernel type BCC does not know. */
typedef int rwf_t;

struct fd_key {
    u32 tgid;
    u32 fd;
};

struct fd_info {
    u64 generation;  /* the process's generation when the fd was opened */
    u64 execs;       /* the process's exec count then */
    u32 cloexec;
    char path[PATH_LEN];
};

struct proc_state {
    u64 generation;
    u64 execs;
};

struct pending_open {
    const char *path;
    u32 cloexec;
};

struct pending_io {
    u32 fd;
    u32 op;
};

struct pending_dup {
    u32 oldfd;
    u32 cloexec;
};

struct file_key {
    u64 cgroup_id; /* the task doing the I/O */
    u32 pid;
    s32 fd;        /* -1 when the path is known */
    u32 op;
    char comm[16];
    char path[PATH_LEN];
    /* 4 bytes of padding (292 → 296): part of the map key, they stay 0 in key_scratch,
     * where only the members are ever written */
};

BPF_TABLE("lru_hash", struct fd_key, struct fd_info, fds, 16384);
BPF_TABLE("lru_hash", u32, struct proc_state, procs, 32768);
BPF_HASH(opening, u32, struct pending_open, 10240);
BPF_HASH(in_io, u32, struct pending_io, 10240);
BPF_HASH(duping, u32, struct pending_dup, 10240);
BPF_PERCPU_ARRAY(info_scratch, struct fd_info, 1);
BPF_PERCPU_ARRAY(key_scratch, struct file_key, 1);

BPF_HASH(files_bytes_total, struct file_key, u64, 10240);
BPF_HASH(files_ops_total, struct file_key, u64, 10240);

static __always_inline u32 current_tgid(void)
{
    return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline u32 current_tid(void)
{
    return (u32)bpf_get_current_pid_tgid();
}

/* An entry is still this process's open file (see the comment at the top). */
static __always_inline int trusted(struct fd_info *info, u32 tgid)
{
    struct proc_state *p = procs.lookup(&tgid);
    if (!p || p->generation != info->generation)
        return 0;
    return !info->cloexec || info->execs == p->execs;
}

/* "/proc", "/sys", "/dev" and anything below them. */
static __always_inline int pseudo_path(const char *path)
{
    if (path[0] != '/')
        return 0;
    char a = path[1], b = path[2], c = path[3], d = path[4], e = path[5];
    if (a == 'p' && b == 'r' && c == 'o' && d == 'c')
        return e == '/' || e == 0;
    if (a == 's' && b == 'y' && c == 's')
        return d == '/' || d == 0;
    if (a == 'd' && b == 'e' && c == 'v')
        return d == '/' || d == 0;
    return 0;
}

/* -------- opens -------- */

static __always_inline int open_enter(const char *path, u64 flags)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = current_tid();
    struct pending_open p = {.path = path, .cloexec = (flags & O_CLOEXEC) != 0};
    if (opening.update(&tid, &p) != 0)
        eunomia_count_drop();
    return 0;
}

static __always_inline int open_exit(long ret)
{
    u32 tid = current_tid();
    struct pending_open *p = opening.lookup(&tid);
    if (!p)
        return 0;
    const char *upath = p->path;
    u32 cloexec = p->cloexec;
    opening.delete(&tid);
    if (ret < 0)
        return 0;
    u32 tgid = current_tgid();
    struct fd_key fk = {.tgid = tgid, .fd = (u32)ret};
    int zero = 0;
    struct fd_info *info = info_scratch.lookup(&zero);
    if (!info)
        return 0;
    __builtin_memset(info->path, 0, sizeof(info->path));  /* the key compares all PATH_LEN bytes */
    if (bpf_probe_read_user_str(info->path, sizeof(info->path), upath) < 0)
        info->path[0] = 0;
    if (!ALL_FILES && pseudo_path(info->path)) {
        fds.delete(&fk);
        return 0;
    }
    struct proc_state fresh = {.generation = bpf_ktime_get_ns()};
    struct proc_state *ps = procs.lookup(&tgid);
    if (ps) {
        fresh.generation = ps->generation;
        fresh.execs = ps->execs;
    } else if (procs.update(&tgid, &fresh) != 0) {
        eunomia_count_drop();
        return 0;
    }
    info->generation = fresh.generation;
    info->execs = fresh.execs;
    info->cloexec = cloexec;
    if (fds.update(&fk, info) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return open_enter(args->filename, args->flags);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return open_enter(args->filename, args->flags);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 flags = 0;  /* struct open_how begins with u64 flags (uapi, stable) */
    bpf_probe_read_user(&flags, sizeof(flags), args->how);
    return open_enter(args->filename, flags);
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    struct fd_key fk = {.tgid = current_tgid(), .fd = (u32)args->fd};
    fds.delete(&fk);
    return 0;
}

/* -------- dup, dup2, dup3, fcntl -------- */

static __always_inline int dup_enter(u32 oldfd, u32 cloexec)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = current_tid();
    struct pending_dup d = {.oldfd = oldfd, .cloexec = cloexec};
    if (duping.update(&tid, &d) != 0)
        eunomia_count_drop();
    return 0;
}

static __always_inline int dup_exit(long ret)
{
    u32 tid = current_tid();
    struct pending_dup *d = duping.lookup(&tid);
    if (!d)
        return 0;
    u32 oldfd = d->oldfd;
    u32 cloexec = d->cloexec;
    duping.delete(&tid);
    if (ret < 0 || (u32)ret == oldfd)
        return 0;
    u32 tgid = current_tgid();
    struct fd_key from = {.tgid = tgid, .fd = oldfd};
    struct fd_key to = {.tgid = tgid, .fd = (u32)ret};
    struct fd_info *old = fds.lookup(&from);
    if (!old || !trusted(old, tgid)) {
        fds.delete(&to);  /* whatever `to` was, it is now an fd of unknown path */
        return 0;
    }
    struct proc_state *ps = procs.lookup(&tgid);
    if (!ps)
        return 0;
    int zero = 0;
    struct fd_info *info = info_scratch.lookup(&zero);
    if (!info)
        return 0;
    __builtin_memcpy(info, old, sizeof(*info));
    info->execs = ps->execs;
    info->cloexec = cloexec;
    if (fds.update(&to, info) != 0)
        eunomia_count_drop();
    return 0;
}

/* fcntl(F_SETFD) or ioctl(FIOCLEX/FIONCLEX): the flag now counts from the current exec on. */
static __always_inline void set_cloexec(u32 fd, u32 cloexec)
{
    u32 tgid = current_tgid();
    struct fd_key fk = {.tgid = tgid, .fd = fd};
    struct fd_info *info = fds.lookup(&fk);
    struct proc_state *ps = procs.lookup(&tgid);
    if (info && ps && trusted(info, tgid)) {
        info->cloexec = cloexec;
        info->execs = ps->execs;
    }
}

TRACEPOINT_PROBE(syscalls, sys_enter_dup)
{
    return dup_enter(args->fildes, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_dup2)
{
    return dup_enter(args->oldfd, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_dup3)
{
    return dup_enter(args->oldfd, (args->flags & O_CLOEXEC) != 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fcntl)
{
    u32 cmd = args->cmd;
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        return dup_enter(args->fd, cmd == F_DUPFD_CLOEXEC);
    if (cmd == F_SETFD)
        set_cloexec(args->fd, (args->arg & FD_CLOEXEC) != 0);
    return 0;
}

/* ioctl(FIOCLEX/FIONCLEX): how Python, Rust and others set or clear close-on-exec. */
TRACEPOINT_PROBE(syscalls, sys_enter_ioctl)
{
    u32 cmd = args->cmd;
    if (cmd == FIOCLEX || cmd == FIONCLEX)
        set_cloexec(args->fd, cmd == FIOCLEX);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_dup)
{
    return dup_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_dup2)
{
    return dup_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_dup3)
{
    return dup_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_fcntl)
{
    return dup_exit(args->ret);
}

/* -------- reads and writes -------- */

static __always_inline int io_enter(u32 fd, u32 op)
{
    if (eunomia_skip_current())
        return 0;
    if (!ALL_FILES) {  /* cheap early out: an fd with no entry is not counted */
        struct fd_key fk = {.tgid = current_tgid(), .fd = fd};
        if (!fds.lookup(&fk))
            return 0;
    }
    u32 tid = current_tid();
    struct pending_io p = {.fd = fd, .op = op};
    if (in_io.update(&tid, &p) != 0)
        eunomia_count_drop();
    return 0;
}

static __always_inline void add(u64 *count, u64 n)
{
    if (count)
        __sync_fetch_and_add(count, n);
    else
        eunomia_count_drop();  /* the map is full until the next read drains it */
}

static __always_inline int io_exit(long ret)
{
    u32 tid = current_tid();
    struct pending_io *p = in_io.lookup(&tid);
    if (!p)
        return 0;
    u32 fd = p->fd;
    u32 op = p->op;
    in_io.delete(&tid);
    if (ret <= 0)
        return 0;
    u32 tgid = current_tgid();
    int zero = 0;
    struct file_key *key = key_scratch.lookup(&zero);
    if (!key)
        return 0;
    struct fd_key fk = {.tgid = tgid, .fd = fd};
    struct fd_info *info = fds.lookup(&fk);
    if (info && trusted(info, tgid)) {
        __builtin_memcpy(key->path, info->path, sizeof(key->path));
        key->fd = -1;
    } else {
        if (!ALL_FILES)
            return 0;
        __builtin_memset(key->path, 0, sizeof(key->path));
        key->fd = (s32)fd;
    }
    key->cgroup_id = eunomia_current_cgroup_id();
    key->pid = tgid;
    key->op = op;
    bpf_get_current_comm(&key->comm, sizeof(key->comm));
    u64 zero64 = 0;
    add(files_bytes_total.lookup_or_try_init(key, &zero64), (u64)ret);
    add(files_ops_total.lookup_or_try_init(key, &zero64), 1);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_read) { return io_enter(args->fd, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_enter_pread64) { return io_enter(args->fd, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { return io_enter(args->fd, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_enter_preadv) { return io_enter(args->fd, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_enter_preadv2) { return io_enter(args->fd, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return io_enter(args->fd, OP_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_enter_pwrite64) { return io_enter(args->fd, OP_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { return io_enter(args->fd, OP_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_enter_pwritev) { return io_enter(args->fd, OP_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_enter_pwritev2) { return io_enter(args->fd, OP_WRITE); }

TRACEPOINT_PROBE(syscalls, sys_exit_read) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_pread64) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_preadv) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_preadv2) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_pwrite64) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_pwritev) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_pwritev2) { return io_exit(args->ret); }

/* -------- process lifecycle -------- */

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = current_tgid();
    struct proc_state *ps = procs.lookup(&tgid);
    if (ps)
        ps->execs++;  /* O_CLOEXEC entries opened before now are closed */
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    eunomia_on_exit();
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    opening.delete(&tid);  /* a thread that died inside a syscall leaves no entry behind */
    in_io.delete(&tid);
    duping.delete(&tid);
    if (tgid == (u32)pid_tgid)
        procs.delete(&tgid);  /* the leader is gone: its fd entries no longer match */
    return 0;
}
