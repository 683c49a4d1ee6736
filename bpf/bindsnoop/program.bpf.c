/* bindsnoop: bind(2) of IPv4 and IPv6 sockets, like bcc's bindsnoop, from the syscall
 * tracepoints alone.
 *
 * sys_enter_bind reads the caller's sockaddr (user memory) and keeps it per thread with the
 * fd; sys_exit_bind adds the result. The address and port are the ones requested (port 0
 * lets the kernel choose one).
 *
 * The socket's type and protocol are not in bind's arguments and the socket itself must
 * not be read: they are remembered from the socket(2) call that created the fd, keyed by
 * (process, fd) and dropped on close(2). A per-process generation, renewed when the pid is
 * reused, keeps a dead process's entries from being attributed to a new one. Sockets the
 * process did not create with socket(2) while the tracer ran (inherited, duplicated,
 * received) have type and protocol "unknown".
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

#ifndef FILTER_PORT
#define FILTER_PORT 0
#endif
#ifndef FILTER_FAILED
#define FILTER_FAILED 0
#endif

struct event {
    struct eunomia_header hdr;
    s32 fd;
    s32 err;
    u16 family;
    u16 port;
    u16 protocol;
    u8 type;
    u8 addr[16];
};

/* struct sockaddr_in / sockaddr_in6 (uapi, stable): the largest is 28 bytes. */
#define SOCKADDR_MAX 28
struct pending_bind {
    const void *uaddr;
    s32 fd;
    u32 addrlen;
    u8 read_ok;
    u8 sa[32];  /* a power of two: the read's length is masked to fit */
};

struct socket_args {
    u32 family;
    u32 type;
    u32 protocol;
};

struct fd_key {
    u32 tgid;
    s32 fd;
};

struct socket_info {
    u64 generation;
    u16 protocol;
    u8 type;
};

struct bind_key {
    u64 cgroup_id;  /* the binding task's */
    u16 family;
    u16 protocol;
    s32 err;
};

BPF_HASH(pending_binds, u32, struct pending_bind, 10240);   /* tid → bind in progress */
BPF_HASH(pending_sockets, u32, struct socket_args, 10240);  /* tid → socket(2) in progress */
BPF_TABLE("lru_hash", struct fd_key, struct socket_info, sockets, 65536);
BPF_TABLE("lru_hash", u32, u64, generations, 32768);         /* tgid → generation of its entries */
BPF_HASH(bindsnoop_binds_total, struct bind_key, u64, 10240);

static __always_inline void count_bind(struct bind_key *key)
{
    u64 zero = 0;
    u64 *count = bindsnoop_binds_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline u16 sa_family(const u8 *sa)
{
    return (u16)sa[0] | ((u16)sa[1] << 8);  /* host order (little-endian) sa_family_t */
}

static __always_inline u16 sa_port(const u8 *sa)
{
    return ((u16)sa[2] << 8) | (u16)sa[3];  /* sin_port / sin6_port, network order */
}

/* The first addrlen bytes (at most SOCKADDR_MAX) of the caller's sockaddr; the rest stays zero. */
static __always_inline int read_sockaddr(struct pending_bind *p)
{
    u64 len = p->addrlen;
    if (len < 4)
        return -1;  /* no family and port: the kernel rejects it (EINVAL) */
    if (len > SOCKADDR_MAX)
        len = SOCKADDR_MAX;
    asm volatile("" : "+r"(len));  /* keep the mask below: it is the bound the verifier sees */
    len &= sizeof(p->sa) - 1;
    return bpf_probe_read_user(p->sa, len, p->uaddr);
}

TRACEPOINT_PROBE(syscalls, sys_enter_bind)
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending_bind p = {};
    p.uaddr = args->umyaddr;
    p.fd = (s32)args->fd;
    p.addrlen = (u32)args->addrlen;
    if (read_sockaddr(&p) == 0)
        p.read_ok = 1;
    if (pending_binds.update(&tid, &p) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_bind)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    u32 tgid = pid_tgid >> 32;
    struct pending_bind *p = pending_binds.lookup(&tid);
    if (!p)
        return 0;
    /* The kernel has copied the sockaddr by now: retry a read that found the page absent. */
    if (!p->read_ok && read_sockaddr(p) == 0)
        p->read_ok = 1;
    u16 family = p->read_ok ? sa_family(p->sa) : 0;
    u16 port = sa_port(p->sa);
    if ((family != AF_INET && family != AF_INET6) || (FILTER_PORT && port != FILTER_PORT)) {
        pending_binds.delete(&tid);
        return 0;
    }
    long ret = args->ret;
    s32 err = ret < 0 ? (s32)-ret : 0;

    u16 protocol = 0;
    u8 type = 0;
    struct fd_key fk = {.tgid = tgid, .fd = p->fd};
    struct socket_info *si = sockets.lookup(&fk);
    u64 *gen = generations.lookup(&tgid);
    if (si && gen && si->generation == *gen) {
        protocol = si->protocol;
        type = si->type;
    }

    struct bind_key key = {.cgroup_id = eunomia_current_cgroup_id(), .family = family == AF_INET6 ? 6 : 4,
                           .protocol = protocol, .err = err};
    count_bind(&key);
    if (FILTER_FAILED && ret >= 0) {
        pending_binds.delete(&tid);
        return 0;
    }
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e) {
        pending_binds.delete(&tid);
        return 0;
    }
    e->fd = p->fd;
    e->err = err;
    e->family = family;
    e->port = port;
    e->protocol = protocol;
    e->type = type;
    __builtin_memset(e->addr, 0, sizeof(e->addr));
    if (family == AF_INET)
        __builtin_memcpy(e->addr, &p->sa[4], 4);    /* sin_addr */
    else
        __builtin_memcpy(e->addr, &p->sa[8], 16);   /* sin6_addr, after sin6_flowinfo */
    eunomia_submit(e, sizeof(*e));
    pending_binds.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_socket)
{
    if (eunomia_skip(0))
        return 0;
    u32 family = (u32)args->family;
    if (family != AF_INET && family != AF_INET6)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct socket_args sa = {.family = family, .type = (u32)args->type & 0xf, .protocol = (u32)args->protocol};
    if (pending_sockets.update(&tid, &sa) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_socket)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    u32 tgid = pid_tgid >> 32;
    struct socket_args *sa = pending_sockets.lookup(&tid);
    if (!sa)
        return 0;
    long fd = args->ret;
    if (fd >= 0) {
        u64 *gen = generations.lookup(&tgid);
        u64 g = 0;
        if (gen) {
            g = *gen;
        } else {
            g = bpf_ktime_get_ns();
            generations.update(&tgid, &g);
        }
        struct socket_info si = {.generation = g, .type = (u8)sa->type};
        si.protocol = (u16)sa->protocol;
        if (si.protocol == 0 && sa->type == SOCK_STREAM)
            si.protocol = IPPROTO_TCP;  /* what the kernel picks for protocol 0 */
        else if (si.protocol == 0 && sa->type == SOCK_DGRAM)
            si.protocol = IPPROTO_UDP;
        struct fd_key fk = {.tgid = tgid, .fd = (s32)fd};
        if (sockets.update(&fk, &si) != 0)
            eunomia_count_drop();
    }
    pending_sockets.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    struct fd_key fk = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = (s32)args->fd};
    sockets.delete(&fk);
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
    if (tgid == (u32)pid_tgid)
        generations.delete(&tgid);  /* its fds are gone: a new process with this pid starts afresh */
    return 0;
}
