/* flows: TCP bytes and connections per (process, local address, remote address, server
 * port): what a service map is drawn from. Tracepoints only, no socket struct read.
 *
 *   sock:inet_sock_set_state  each socket's addresses, ports and role, and its owner,
 *       keyed by the socket's address (an opaque key, never dereferenced):
 *         CLOSE → SYN_SENT   connect(2): a client socket, owned by the connecting task;
 *         CLOSE → LISTEN     listen(2): a listener, owned by the listening task;
 *         LISTEN → SYN_RECV  a connection accepted from a listener: a server socket,
 *                            owned by the task that listened on that local port;
 *         → ESTABLISHED      the addresses are rendered as text, and the connection is
 *                            counted for its owner (flows_connections_total).
 *   tcp:tcp_rcv_space_adjust  runs in recvmsg(2): the addresses of a socket older than the
 *       tracer, learnt at its first receive (its role stays unknown).
 *   sock:sock_send_length / sock:sock_recv_length  run in sendmsg(2)/recvmsg(2) (and
 *       write/read/sendto/…) in the caller's context: the bytes are counted for the task
 *       doing the I/O, which is current, under the socket's addresses and port.
 *
 * Labels can only be integers and strings, so addresses are rendered into text in the
 * kernel, once per socket, as inet_ntop(3) writes them. The port label is the server's
 * port: the remote port of a client socket, the local port of a server socket (the remote
 * one would be an ephemeral port, a new series per connection); of a socket of unknown
 * role, the remote port. Sockets the tracer knows nothing of (idle since before it
 * started) are counted with empty addresses and port 0.
 */
#include "socket_owner.h"  /* the owner of each socket, and the listeners by port */
#include "inet_addr.h"

#define MSG_PEEK 2
#define ADDR_TEXT_LEN 40

enum { ROLE_UNKNOWN = 0, ROLE_CLIENT = 1, ROLE_SERVER = 2 };

#ifndef FILTER_PORT
#define FILTER_PORT 0
#endif

#include "inet_text.h"  /* format_addr(): an address as inet_ntop(3) writes it */
}

/* -------- per-socket records -------- */

struct flow {            /* the labels that describe the socket (see struct flow_key) */
    u16 port;
    u16 family;          /* 4 or 6 */
    u32 role;
    char laddr[ADDR_TEXT_LEN];
    char raddr[ADDR_TEXT_LEN];
};

struct sock_rec {
    struct flow flow;
    struct socket_owner owner;
    u16 lport;
    u16 rport;
    u32 rendered;        /* flow.laddr/raddr are filled */
};

BPF_TABLE("lru_hash", u64, struct sock_rec, socks, 65536);

/* -------- the counters -------- */

struct flow_key {
    u64 cgroup_id;       /* of the task doing the I/O; for connections, of the socket's owner */
    u32 pid;
    struct flow flow;    /* port, family, role, laddr, raddr */
    char comm[16];
    /* 4 bytes of padding (116 → 120): part of the map key, they stay 0 in work_scratch,
     * where only the members are ever written */
};
BPF_HASH(flows_sent_bytes_total, struct flow_key, u64, 16384);
BPF_HASH(flows_received_bytes_total, struct flow_key, u64, 16384);
BPF_HASH(flows_connections_total, struct flow_key, u64, 16384);

struct work {            /* too big for the 512-byte stack */
    u8 saddr[16];
    u8 daddr[16];
    struct addr_text text;
    struct sock_rec rec;
    struct flow_key key;
};
BPF_PERCPU_ARRAY(work_scratch, struct work, 1);

static __always_inline struct work *work(void)
{
    int zero = 0;
    return work_scratch.lookup(&zero);
}

static __always_inline void add(u64 *count, u64 n)
{
    if (count)
        __sync_fetch_and_add(count, n);
    else
        eunomia_count_drop();  /* the map is full until the next read drains it */
}

/* Fill w->rec.flow's addresses and ports from addresses already in w->saddr/daddr. */
static __always_inline void render(struct work *w, u16 family, u16 sport, u16 dport)
{
    struct sock_rec *r = &w->rec;
    r->flow.family = family == AF_INET6 ? 6 : 4;
    r->lport = sport;
    r->rport = dport;
    r->flow.port = r->flow.role == ROLE_SERVER ? sport : dport;
    format_addr(w->text.s, family, w->saddr);
    __builtin_memcpy(r->flow.laddr, w->text.s, ADDR_TEXT_LEN);
    format_addr(w->text.s, family, w->daddr);
    __builtin_memcpy(r->flow.raddr, w->text.s, ADDR_TEXT_LEN);
    r->rendered = 1;
}

static __always_inline int port_matches(u16 lport, u16 rport)
{
    return !FILTER_PORT || lport == FILTER_PORT || rport == FILTER_PORT;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int oldstate = args->oldstate;
    int newstate = args->newstate;
    u16 family = args->family;
    u16 sport = args->sport;
    u16 dport = args->dport;

    if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
        socket_listener_remove(family, sport, sk);
        socks.delete(&sk);
        return 0;
    }
    struct work *w = work();
    if (!w)
        return 0;
    struct sock_rec *r = &w->rec;
    if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) {
        /* connect(2) or listen(2): a new socket, whose owner is current */
        __builtin_memset(r, 0, sizeof(*r));
        r->flow.role = newstate == TCP_SYN_SENT ? ROLE_CLIENT : ROLE_UNKNOWN;
        socket_owner_from_current(&r->owner);
        if (newstate == TCP_LISTEN)
            socket_listener_add(family, sport, sk, &r->owner);
        if (socks.update(&sk, r) != 0)
            eunomia_count_drop();
        return 0;
    }
    if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
        /* a connection accepted from a listener: owned by whoever listened on the port */
        __builtin_memset(r, 0, sizeof(*r));
        r->flow.role = ROLE_SERVER;
        socket_listener_owner(family, sport, &r->owner);
        if (socks.update(&sk, r) != 0)
            eunomia_count_drop();
        return 0;
    }
    if (newstate != TCP_ESTABLISHED)
        return 0;

    /* Established: render the addresses once, and count the connection for its owner. */
    struct sock_rec *known = socks.lookup(&sk);
    if (known)
        __builtin_memcpy(r, known, sizeof(*r));
    else
        __builtin_memset(r, 0, sizeof(*r));  /* its start predates the tracer */
    inet_addr_pair(w->saddr, w->daddr, family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
    render(w, family, sport, dport);
    if (socks.update(&sk, r) != 0)
        eunomia_count_drop();

    if (!port_matches(sport, dport) || socket_owner_skipped(&r->owner))
        return 0;
    struct flow_key *key = &w->key;
    key->cgroup_id = r->owner.hdr.cgroup_id;  /* the owner's, not the task a softirq interrupted */
    key->pid = r->owner.hdr.pid;
    __builtin_memcpy(&key->flow, &r->flow, sizeof(key->flow));
    __builtin_memcpy(key->comm, r->owner.hdr.comm, sizeof(key->comm));
    u64 zero = 0;
    add(flows_connections_total.lookup_or_try_init(key, &zero), 1);
    return 0;
}

/* recvmsg(2) of a socket: learn the addresses of one older than the tracer. */
TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust)
{
    u64 sk = (u64)args->skaddr;
    struct sock_rec *known = socks.lookup(&sk);
    if (known && known->rendered)
        return 0;
    struct work *w = work();
    if (!w)
        return 0;
    u16 family = args->family;
    struct sock_rec *r = &w->rec;
    if (known)
        __builtin_memcpy(r, known, sizeof(*r));
    else
        __builtin_memset(r, 0, sizeof(*r));
    inet_addr_pair(w->saddr, w->daddr, family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
    render(w, family, args->sport, args->dport);
    if (socks.update(&sk, r) != 0)
        eunomia_count_drop();
    return 0;
}

/* Bytes: counted for the task doing the I/O (current), under the socket's flow. */
static __always_inline int count_bytes(void *skp, u16 family, u16 protocol, int ret, int sending)
{
    if (protocol != IPPROTO_TCP || ret <= 0)
        return 0;
    if (eunomia_skip_current())
        return 0;
    u64 sk = (u64)skp;
    struct work *w = work();
    if (!w)
        return 0;
    struct flow_key *key = &w->key;
    struct sock_rec *r = socks.lookup(&sk);
    if (r && r->rendered) {
        if (!port_matches(r->lport, r->rport))
            return 0;
        __builtin_memcpy(&key->flow, &r->flow, sizeof(key->flow));
    } else {
        if (FILTER_PORT)
            return 0;  /* ports unknown */
        __builtin_memset(&key->flow, 0, sizeof(key->flow));
        key->flow.family = family == AF_INET6 ? 6 : 4;
        key->flow.role = r ? r->flow.role : ROLE_UNKNOWN;
    }
    key->cgroup_id = eunomia_current_cgroup_id();
    key->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&key->comm, sizeof(key->comm));
    u64 zero = 0;
    if (sending)
        add(flows_sent_bytes_total.lookup_or_try_init(key, &zero), (u64)ret);
    else
        add(flows_received_bytes_total.lookup_or_try_init(key, &zero), (u64)ret);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
    return count_bytes(args->sk, args->family, args->protocol, args->ret, 1);
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    if (args->flags & MSG_PEEK)
        return 0;  /* peeked data is received again later */
    return count_bytes(args->sk, args->family, args->protocol, args->ret, 0);
}
