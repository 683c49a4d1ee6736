/* tcpretrans: retransmitted TCP segments, IPv4 and IPv6, from tcp:tcp_retransmit_skb.
 *
 * Retransmits run in timer or softirq context, where the current task is whatever the
 * CPU happened to interrupt: the socket's owner comes from bpf/include/socket_owner.h,
 * for the events' header and the counter's cgroup_id. Unknown owner: pid 0, no comm,
 * cgroup_id 0.
 */
#define EUNOMIA_SOCKET_OWNERS
#include "socket_owner.h"
#include "inet_addr.h"

#ifndef FILTER_PORT
#define FILTER_PORT 0
#endif

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

struct retrans_key {
    u64 cgroup_id;  /* the socket owner's (0: not known) */
    u16 family;
    u16 dport;
    u32 pad;        /* the map key is all 16 bytes: set to 0 */
};
BPF_HASH(tcpretrans_retransmits_total, struct retrans_key, u64, 10240);

static __always_inline void count_retransmit(struct retrans_key *key)
{
    u64 zero = 0;
    u64 *count = tcpretrans_retransmits_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol == IPPROTO_TCP)
        socket_owners_track((u64)args->skaddr, args->family, args->sport, args->oldstate, args->newstate);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u64 sk = (u64)args->skaddr;
    u16 sport = args->sport;
    u16 dport = args->dport;
    if (FILTER_PORT && sport != FILTER_PORT && dport != FILTER_PORT)
        return 0;
    struct socket_owner *o = socket_owner_of(sk);
    if (socket_owner_skipped(o))
        return 0;
    u16 family = args->family;
    struct retrans_key key = {.cgroup_id = o && o->known ? o->hdr.cgroup_id : 0,
                              .family = family == AF_INET6 ? 6 : 4, .dport = dport, .pad = 0};
    count_retransmit(&key);

    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        eunomia_count_drop();
        return 0;
    }
    socket_owner_header(&e->hdr, o);
    e->hdr.ts = bpf_ktime_get_ns();
    e->skaddr = sk;
    e->err = args->err;
    e->family = family;
    e->sport = sport;
    e->dport = dport;
    e->state = (u8)args->state;
    inet_addr_pair(e->saddr, e->daddr, family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
    eunomia_submit(e, sizeof(*e));
    return 0;
}
