/* mountsnoop: mount(2) and umount2(2), like bcc's mountsnoop, from the syscall tracepoints.
 *
 * Entry keeps the user pointers and the flags per thread; the exit probe reads the strings
 * (still valid user memory, and resident since the kernel has just copied them) straight
 * into the ring buffer record, with the result.
 */
#include "eunomia.h"

#ifndef FILTER_FAILED
#define FILTER_FAILED 0
#endif
#define PATH_LEN 256
#define FSTYPE_LEN 64
#define DATA_LEN 256

enum { CALL_MOUNT = 0, CALL_UMOUNT = 1 };

struct event {
    struct eunomia_header hdr;
    u64 flags;
    s32 err;
    u8 call;
    char source[PATH_LEN];
    char target[PATH_LEN];
    char fstype[FSTYPE_LEN];
    char data[DATA_LEN];
};

struct pending {
    const char *source;
    const char *target;
    const char *fstype;
    const char *data;
    u64 flags;
    u8 call;
};

struct call_key {
    u64 cgroup_id;  /* the calling task's */
    u32 call;
    s32 err;
};

BPF_HASH(pending_calls, u32, struct pending, 1024);
BPF_HASH(mountsnoop_calls_total, struct call_key, u64, 4096);

static __always_inline void count_call(struct call_key *key)
{
    u64 zero = 0;
    u64 *count = mountsnoop_calls_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline int on_enter(struct pending *p)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (pending_calls.update(&tid, p) != 0)
        eunomia_count_drop();
    return 0;
}

static __always_inline void read_str(char *dst, u32 size, const char *src)
{
    if (!src || bpf_probe_read_user_str(dst, size, src) < 0)
        dst[0] = 0;
}

static __always_inline int on_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending *p = pending_calls.lookup(&tid);
    if (!p)
        return 0;
    struct call_key key = {.cgroup_id = eunomia_current_cgroup_id(), .call = p->call,
                           .err = ret < 0 ? (s32)-ret : 0};
    count_call(&key);
    if (FILTER_FAILED && ret >= 0) {
        pending_calls.delete(&tid);
        return 0;
    }
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e) {
        pending_calls.delete(&tid);
        return 0;
    }
    e->flags = p->flags;
    e->err = key.err;
    e->call = p->call;
    read_str(e->target, sizeof(e->target), p->target);
    if (p->call == CALL_MOUNT) {
        read_str(e->source, sizeof(e->source), p->source);
        read_str(e->fstype, sizeof(e->fstype), p->fstype);
        /* data is a string for most filesystems (the options), binary for a few (old NFS). */
        read_str(e->data, sizeof(e->data), p->data);
    } else {
        e->source[0] = 0;
        e->fstype[0] = 0;
        e->data[0] = 0;
    }
    eunomia_submit(e, sizeof(*e));
    pending_calls.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    struct pending p = {.source = args->dev_name, .target = args->dir_name, .fstype = args->type,
                        .data = (const char *)args->data, .flags = args->flags, .call = CALL_MOUNT};
    return on_enter(&p);
}

TRACEPOINT_PROBE(syscalls, sys_exit_mount)
{
    return on_exit(args->ret);
}

/* umount2(2); umount(2), where an architecture has it, is umount2 with flags 0 in the kernel. */
TRACEPOINT_PROBE(syscalls, sys_enter_umount)
{
    struct pending p = {.target = args->name, .flags = (u32)args->flags, .call = CALL_UMOUNT};
    return on_enter(&p);
}

TRACEPOINT_PROBE(syscalls, sys_exit_umount)
{
    return on_exit(args->ret);
}
