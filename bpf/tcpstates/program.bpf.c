/* tcpstates: every TCP state change, with the time spent in the old state, and the
 * lifetime of the connection when it closes (bcc's tcpstates and tcplife together),
 * from sock:inet_sock_set_state alone.
 *
 * Many transitions run in softirq or timer context, where the current task is whatever
 * the CPU happened to interrupt. So every event carries the socket's owner, recorded in
 * a map keyed by the socket's address (an opaque key, never dereferenced) when the
 * owner is current:
 *   CLOSE → SYN_SENT   connect(2): the connecting task;
 *   CLOSE → LISTEN     listen(2): the listening task, also remembered per local port;
 *   LISTEN → SYN_RECV  a connection accepted from a listener (softirq): the task that
 *                      listened on that local port;
 *   → FIN_WAIT1, → LAST_ACK  close(2)/shutdown(2): the closing task, for a socket whose
 *                      owner was not known yet (it existed before the tracer started).
 * Until an owner is known, events carry pid 0 and an empty comm.
 */
#include "socket_owner.h"
#include "inet_addr.h"

#ifndef FILTER_LPORT
#define FILTER_LPORT 0
#endif
#ifndef FILTER_RPORT
#define FILTER_RPORT 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 skaddr;
    u64 delta_ns;
    u64 lifetime_ns;
    u16 family;
    u16 sport;
    u16 dport;
    u8 oldstate;
    u8 newstate;
    u8 saddr[16];
    u8 daddr[16];
};

struct sock_rec {
    struct socket_owner owner;
    u64 first_ts;               /* first state change seen */
    u64 last_ts;                /* latest state change */
    u8 born;                    /* the first change seen was the socket's birth */
};

BPF_TABLE("lru_hash", u64, struct sock_rec, socks, 65536);

/* Both metrics are keyed by the socket owner's cgroup (0: not known), not the cgroup of
 * whatever task a softirq or timer interrupted. */
struct state_key {
    u64 cgroup_id;
    u8 newstate;
};
struct lifetime_key {
    u64 cgroup_id;
    u32 slot;
    u32 pad;  /* the map key is all 16 bytes: set to 0 */
};
BPF_HASH(tcpstates_transitions_total, struct state_key, u64, 4096);
BPF_HASH(tcpstates_lifetime_seconds, struct lifetime_key, u64, 4096);

static __always_inline void count_transition(u64 cgroup_id, u8 newstate)
{
    struct state_key key;
    __builtin_memset(&key, 0, sizeof(key));  /* the padding is part of the map key */
    key.cgroup_id = cgroup_id;
    key.newstate = newstate;
    u64 zero = 0;
    u64 *count = tcpstates_transitions_total.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline void count_lifetime(u64 cgroup_id, u64 lifetime)
{
    struct lifetime_key key = {.cgroup_id = cgroup_id, .slot = bpf_log2l(lifetime), .pad = 0};
    u64 zero = 0;
    u64 *count = tcpstates_lifetime_seconds.lookup_or_try_init(&key, &zero);
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
    int oldstate = args->oldstate;
    int newstate = args->newstate;
    u16 family = args->family;
    u16 sport = args->sport;
    u64 now = bpf_ktime_get_ns();

    struct sock_rec fresh = {};
    struct sock_rec *r = socks.lookup(&sk);
    int born = oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV);
    int is_new = !r || born;
    if (is_new) {
        fresh.first_ts = now;
        fresh.born = born;
        if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) {
            socket_owner_from_current(&fresh.owner);
        } else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
            socket_listener_owner(family, sport, &fresh.owner);
        }
        r = &fresh;
    }
    if (!r->owner.known && (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK))
        socket_owner_from_current(&r->owner);  /* close(2) or shutdown(2) of an older socket */

    u64 delta = r->last_ts ? now - r->last_ts : 0;
    u64 lifetime = now - r->first_ts;
    u8 was_born = r->born;
    int skip = socket_owner_skipped(&r->owner);
    u64 cgroup_id = r->owner.known ? r->owner.hdr.cgroup_id : 0;

    struct event *e = NULL;
    if (!skip && (!FILTER_LPORT || sport == FILTER_LPORT) && (!FILTER_RPORT || args->dport == FILTER_RPORT)) {
        e = events.ringbuf_reserve(sizeof(struct event));
        if (!e)
            eunomia_count_drop();
        else
            socket_owner_header(&e->hdr, &r->owner);
        count_transition(cgroup_id, (u8)newstate);
        if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN && was_born)  /* connections, not listeners */
            count_lifetime(cgroup_id, lifetime);
    }

    /* Listeners by local port, for the connections accepted from them. */
    if (oldstate == TCP_CLOSE && newstate == TCP_LISTEN)
        socket_listener_add(family, sport, sk, &r->owner);
    else if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE)
        socket_listener_remove(family, sport, sk);

    /* Now the record: its life ends at CLOSE. (r may point into the map: done with it.) */
    if (newstate == TCP_CLOSE) {
        socks.delete(&sk);
    } else if (is_new) {
        fresh.last_ts = now;
        if (socks.update(&sk, &fresh) != 0)
            eunomia_count_drop();
    } else {
        r->last_ts = now;
    }

    if (!e)
        return 0;
    e->hdr.ts = now;
    e->skaddr = sk;
    e->delta_ns = delta;
    e->lifetime_ns = newstate == TCP_CLOSE ? lifetime : 0;
    e->family = family;
    e->sport = sport;
    e->dport = args->dport;
    e->oldstate = (u8)oldstate;
    e->newstate = (u8)newstate;
    inet_addr_pair(e->saddr, e->daddr, family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
    eunomia_submit(e, sizeof(*e));
    return 0;
}
