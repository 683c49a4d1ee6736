/* tcpconnlat: TCP connect latency, like bcc's tcpconnlat: the time from connect(2)
 * sending the SYN to the connection being established (the SYN-ACK processed), IPv4 and
 * IPv6, from sock:inet_sock_set_state alone.
 *
 * CLOSE → SYN_SENT runs in connect(2), in the caller's context: remember who and when,
 * keyed by the socket's address (an opaque key, never dereferenced). SYN_SENT →
 * ESTABLISHED runs when the SYN-ACK arrives, usually in softirq where the current task
 * is unrelated: the event takes its task from the record, and its addresses and ports
 * from the tracepoint (the local port is only known by then). A connect that fails
 * (SYN_SENT → CLOSE) or turns into a simultaneous open is forgotten.
 */
#include "eunomia.h"
#include "inet_addr.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

#ifndef MIN_MS
#define MIN_MS 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 latency_ns;
    u16 family;
    u16 lport;
    u16 dport;
    u8 saddr[16];
    u8 daddr[16];
};

struct connecting {
    struct eunomia_header hdr;  /* hdr.ts = when the SYN was sent */
};

BPF_TABLE("lru_hash", u64, struct connecting, connecting, 16384);

struct latency_key {
    u64 cgroup_id;  /* the connecting task's, from its record */
    u16 family;
    u16 dport;
    u32 slot;
};
BPF_HASH(tcpconnlat_latency_seconds, struct latency_key, u64, 10240);

static __always_inline void count_latency(struct latency_key *key)
{
    u64 zero = 0;
    u64 *count = tcpconnlat_latency_seconds.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int oldstate = args->oldstate;
    int newstate = args->newstate;
    if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
        if (eunomia_skip_current())
            return 0;
        struct connecting c = {};
        eunomia_fill_header(&c.hdr);
        if (connecting.update(&sk, &c) != 0)
            eunomia_count_drop();
        return 0;
    }
    if (oldstate != TCP_SYN_SENT)
        return 0;
    struct connecting *c = connecting.lookup(&sk);
    if (!c)
        return 0;
    if (newstate != TCP_ESTABLISHED) {
        connecting.delete(&sk);
        return 0;
    }
    u64 latency = bpf_ktime_get_ns() - c->hdr.ts;
    u16 family = args->family;
    struct latency_key key = {.cgroup_id = c->hdr.cgroup_id, .family = family == AF_INET6 ? 6 : 4,
                              .dport = args->dport, .slot = bpf_log2l(latency)};
    count_latency(&key);
    if (latency < (u64)MIN_MS * 1000000ULL) {
        connecting.delete(&sk);
        return 0;
    }
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        eunomia_count_drop();
        connecting.delete(&sk);
        return 0;
    }
    __builtin_memcpy(&e->hdr, &c->hdr, sizeof(e->hdr));
    e->latency_ns = latency;
    e->family = family;
    e->lport = args->sport;
    e->dport = args->dport;
    inet_addr_pair(e->saddr, e->daddr, family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
    eunomia_submit(e, sizeof(*e));
    connecting.delete(&sk);
    return 0;
}
