/* tcpretrans: retransmitted TCP segments, IPv4 and IPv6, from tcp:tcp_retransmit_skb.
 *
 * Retransmits run in timer or softirq context, where the current task is whatever the
 * CPU happened to interrupt. The socket's owner comes from sock:inet_sock_set_state,
 * kept in a map keyed by the socket's address (an opaque key, never dereferenced), as
 * in tcpstates: the task that called connect() (CLOSE → SYN_SENT) or listen() (CLOSE →
 * LISTEN); for a connection accepted from a listener, the task that listened on its
 * local port; for a socket opened before the tracer started, the task that closes it
 * (→ FIN_WAIT1, → LAST_ACK run in close()/shutdown()). Unknown owner: pid 0, no comm.
 */
#include "eunomia.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10

#ifndef FILTER_PORT
#define FILTER_PORT 0
#endif
/* With -p or -n, a socket whose owner is unknown cannot match: it is left out. */
#define FILTER_ACTIVE (EUNOMIA_FILTER_PID != 0 || EUNOMIA_FILTER_COMM_SET != 0)

struct event {
    struct eunomia_header hdr;
    u64 skaddr;
    s32 err;
    u16 family;
    u16 sport;
    u16 dport;
    u8 state;
    u8 saddr[16];
    u8 daddr[16];
};

struct owner {
    struct eunomia_header hdr;  /* hdr.ts unused */
    u8 skip;                    /* the owner is the agent, or outside -p/-n */
};

struct listen_key {
    u16 family;
    u16 port;
};

struct listener {
    struct owner owner;
    u64 skaddr;
};

BPF_TABLE("lru_hash", u64, struct owner, owners, 65536);
BPF_TABLE("lru_hash", struct listen_key, struct listener, listeners, 4096);

struct retrans_key {
    u16 family;
    u16 dport;
};
BPF_HASH(tcpretrans_retransmits_total, struct retrans_key, u64, 10240);

static __always_inline void owner_from_current(struct owner *o)
{
    o->skip = eunomia_skip_current();
    eunomia_fill_header(&o->hdr);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int oldstate = args->oldstate;
    int newstate = args->newstate;
    struct listen_key lk = {.family = args->family, .port = args->sport};

    if (newstate == TCP_CLOSE) {
        owners.delete(&sk);
        if (oldstate == TCP_LISTEN) {
            struct listener *l = listeners.lookup(&lk);
            if (l && l->skaddr == sk)
                listeners.delete(&lk);
        }
        return 0;
    }
    if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) {
        struct owner o = {};
        owner_from_current(&o);  /* connect(2) or listen(2): the owner is current */
        if (owners.update(&sk, &o) != 0)
            eunomia_count_drop();
        if (newstate == TCP_LISTEN) {
            struct listener l = {.skaddr = sk};
            __builtin_memcpy(&l.owner, &o, sizeof(o));
            if (listeners.update(&lk, &l) != 0)
                eunomia_count_drop();
        }
        return 0;
    }
    if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
        struct listener *l = listeners.lookup(&lk);
        if (l && owners.update(&sk, &l->owner) != 0)
            eunomia_count_drop();
        return 0;
    }
    if ((newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) && !owners.lookup(&sk)) {
        struct owner o = {};
        owner_from_current(&o);  /* close(2)/shutdown(2) of a socket older than the tracer */
        if (owners.update(&sk, &o) != 0)
            eunomia_count_drop();
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u64 sk = (u64)args->skaddr;
    u16 sport = args->sport;
    u16 dport = args->dport;
    if (FILTER_PORT && sport != FILTER_PORT && dport != FILTER_PORT)
        return 0;
    struct owner *o = owners.lookup(&sk);
    if (o ? o->skip : FILTER_ACTIVE)
        return 0;
    u16 family = args->family;
    struct retrans_key key = {.family = family == AF_INET6 ? 6 : 4, .dport = dport};
    tcpretrans_retransmits_total.increment(key);

    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        eunomia_count_drop();
        return 0;
    }
    if (o)
        __builtin_memcpy(&e->hdr, &o->hdr, sizeof(e->hdr));
    else
        __builtin_memset(&e->hdr, 0, sizeof(e->hdr));
    e->hdr.ts = bpf_ktime_get_ns();
    e->skaddr = sk;
    e->err = args->err;
    e->family = family;
    e->sport = sport;
    e->dport = dport;
    e->state = (u8)args->state;
    if (family == AF_INET) {
        __builtin_memset(e->saddr, 0, sizeof(e->saddr));
        __builtin_memset(e->daddr, 0, sizeof(e->daddr));
        __builtin_memcpy(e->saddr, args->saddr, 4);
        __builtin_memcpy(e->daddr, args->daddr, 4);
    } else {
        __builtin_memcpy(e->saddr, args->saddr_v6, 16);
        __builtin_memcpy(e->daddr, args->daddr_v6, 16);
    }
    eunomia_submit(e, sizeof(*e));
    return 0;
}
