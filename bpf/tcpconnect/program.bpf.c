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

struct connect_key {
    u16 family;
    u16 dport;
};
BPF_HASH(tcp_connects_total, struct connect_key, u64, 10240);
BPF_HASH(tcp_connect_latency_seconds, u32, u64, 64);

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
    struct connect_key key = {.family = args->family == AF_INET6 ? 6 : 4, .dport = args->dport};
    tcp_connects_total.increment(key);
    if (args->newstate == TCP_ESTABLISHED) {
        u32 slot = bpf_log2l(latency);
        tcp_connect_latency_seconds.increment(slot);
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
