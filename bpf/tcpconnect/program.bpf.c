/* tcpconnect: active TCP connections, IPv4 and IPv6, with addresses, ports and the
 * time the handshake took, from sock:inet_sock_set_state alone.
 *
 * CLOSE → SYN_SENT happens in connect(2), in the caller's context: remember who and
 * when, keyed by the socket's address (an opaque key, never dereferenced). SYN_SENT →
 * ESTABLISHED (or → CLOSE for a refused or failed connect) usually runs in softirq,
 * where the current task is unrelated; the event takes its task from that record and
 * its addresses and ports from the tracepoint (the source port is only known by then).
 */
#include "eunomia.h"
#include "inet_addr.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

#ifndef FILTER_DPORT
#define FILTER_DPORT 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 latency_ns;
    u16 family;
    u16 sport;
    u16 dport;
    u8 result;
    u8 saddr[16];
    u8 daddr[16];
};

struct connecting {
    struct eunomia_header hdr;
};

BPF_TABLE("lru_hash", u64, struct connecting, connecting, 16384);

/* Both metrics are keyed by the connecting task's cgroup, from its record: the
 * handshake usually ends in softirq, where the current task is unrelated. */
struct connect_key {
    u64 cgroup_id;
    u16 family;
    u16 dport;
    u32 pad;  /* the map key is all 16 bytes: set to 0 */
};
struct latency_key {
    u64 cgroup_id;
    u32 slot;
    u32 pad;
};
BPF_HASH(tcp_connects_total, struct connect_key, u64, 10240);
BPF_HASH(tcp_connect_latency_seconds, struct latency_key, u64, 4096);

static __always_inline void count_connect(struct connect_key *key)
{
    u64 zero = 0;
    u64 *count = tcp_connects_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline void count_latency(struct latency_key *key)
{
    u64 zero = 0;
    u64 *count = tcp_connect_latency_seconds.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->oldstate == TCP_CLOSE && args->newstate == TCP_SYN_SENT) {
        if (eunomia_skip_current())
            return 0;
        if (FILTER_DPORT && args->dport != FILTER_DPORT)
            return 0;
        struct connecting c = {};
        eunomia_fill_header(&c.hdr);
        if (connecting.update(&sk, &c) != 0)
            eunomia_count_drop();
        return 0;
    }
    if (args->oldstate != TCP_SYN_SENT)
        return 0;
    if (args->newstate != TCP_ESTABLISHED && args->newstate != TCP_CLOSE)
        return 0;
    struct connecting *c = connecting.lookup(&sk);
    if (!c)
        return 0;
    u64 now = bpf_ktime_get_ns();
    u64 latency = now - c->hdr.ts;
    struct connect_key key = {.cgroup_id = c->hdr.cgroup_id, .family = args->family == AF_INET6 ? 6 : 4,
                              .dport = args->dport, .pad = 0};
    count_connect(&key);
    if (args->newstate == TCP_ESTABLISHED) {
        struct latency_key lkey = {.cgroup_id = c->hdr.cgroup_id, .slot = bpf_log2l(latency), .pad = 0};
        count_latency(&lkey);
    }
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        eunomia_count_drop();
        connecting.delete(&sk);
        return 0;
    }
    __builtin_memcpy(&e->hdr, &c->hdr, sizeof(e->hdr));
    e->latency_ns = latency;
    e->family = args->family;
    e->sport = args->sport;
    e->dport = args->dport;
    e->result = args->newstate == TCP_ESTABLISHED ? 0 : 1;
    inet_addr_pair(e->saddr, e->daddr, args->family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
    eunomia_submit(e, sizeof(*e));
    connecting.delete(&sk);
    return 0;
}
