/* opensnoop: every open(2)/openat(2)/openat2(2) with its path, flags, fd and errno.
 *
 * Entry keeps the user pointer to the path and the flags per thread; the exit probe
 * reads the path (still valid user memory) straight into the ring buffer record.
 */
#include "eunomia.h"

#ifndef FILTER_FAILED
#define FILTER_FAILED 0
#endif
#define PATH_LEN 256

struct event {
    struct eunomia_header hdr;
    s32 fd;
    s32 err;
    u32 flags;
    u32 mode;
    char path[PATH_LEN];
};

struct pending {
    const char *path;
    u32 flags;
    u32 mode;
};

BPF_HASH(pending_open, u32, struct pending, 10240);
struct errno_key {
    u64 cgroup_id;  /* the opening task's */
    s32 err;
};
BPF_HASH(opensnoop_opens_total, struct errno_key, u64, 10240);

static __always_inline void count_open(s32 err)
{
    struct errno_key key;
    __builtin_memset(&key, 0, sizeof(key));  /* the padding is part of the map key */
    key.cgroup_id = eunomia_current_cgroup_id();
    key.err = err;
    u64 zero = 0;
    u64 *count = opensnoop_opens_total.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline int on_enter(const char *path, u64 flags, u64 mode)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending p = {.path = path, .flags = (u32)flags, .mode = (u32)mode};
    if (pending_open.update(&tid, &p) != 0)
        eunomia_count_drop();
    return 0;
}

static __always_inline int on_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending *p = pending_open.lookup(&tid);
    if (!p)
        return 0;
    count_open(ret < 0 ? (s32)-ret : 0);
    if (FILTER_FAILED && ret >= 0) {
        pending_open.delete(&tid);
        return 0;
    }
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e) {
        pending_open.delete(&tid);
        return 0;
    }
    e->fd = ret < 0 ? -1 : (s32)ret;
    e->err = ret < 0 ? (s32)-ret : 0;
    e->flags = p->flags;
    e->mode = p->mode;
    if (bpf_probe_read_user_str(e->path, sizeof(e->path), p->path) < 0)
        e->path[0] = 0;
    eunomia_submit(e, sizeof(*e));
    pending_open.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return on_enter(args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return on_enter(args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[2] = {};  /* struct open_how begins with u64 flags, u64 mode (uapi, stable) */
    bpf_probe_read_user(&how, sizeof(how), args->how);
    return on_enter(args->filename, how[0], how[1]);
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    return on_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    return on_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
    return on_exit(args->ret);
}
