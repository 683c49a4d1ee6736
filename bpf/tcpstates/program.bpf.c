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
#include "eunomia.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10

#ifndef FILTER_LPORT
#define FILTER_LPORT 0
#endif
#ifndef FILTER_RPORT
#define FILTER_RPORT 0
#endif
/* With -p or -n, a socket whose owner is unknown cannot match: it is left out. */
#define FILTER_ACTIVE (EUNOMIA_FILTER_PID != 0 || EUNOMIA_FILTER_COMM_SET != 0)

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

struct owner {
    struct eunomia_header hdr;  /* hdr.ts unused */
    u8 known;
    u8 skip;                    /* the owner is the agent, or outside -p/-n */
};

struct sock_rec {
    struct owner owner;
    u64 first_ts;               /* first state change seen */
    u64 last_ts;                /* latest state change */
    u8 born;                    /* the first change seen was the socket's birth */
};

struct listen_key {
    u16 family;
    u16 port;
};

struct listener {
    struct owner owner;
    u64 skaddr;
};

BPF_TABLE("lru_hash", u64, struct sock_rec, socks, 65536);
BPF_TABLE("lru_hash", struct listen_key, struct listener, listeners, 4096);

struct state_key {
    u8 newstate;
};
BPF_HASH(tcpstates_transitions_total, struct state_key, u64, 64);
BPF_HASH(tcpstates_lifetime_seconds, u32, u64, 64);

static __always_inline void owner_from_current(struct owner *o)
{
    o->skip = eunomia_skip_current();
    eunomia_fill_header(&o->hdr);
    o->known = 1;
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
            owner_from_current(&fresh.owner);
        } else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
            struct listen_key lk = {.family = family, .port = sport};
            struct listener *l = listeners.lookup(&lk);
            if (l)
                __builtin_memcpy(&fresh.owner, &l->owner, sizeof(fresh.owner));
        }
        r = &fresh;
    }
    if (!r->owner.known && (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK))
        owner_from_current(&r->owner);  /* close(2) or shutdown(2) of an older socket */

    u64 delta = r->last_ts ? now - r->last_ts : 0;
    u64 lifetime = now - r->first_ts;
    u8 was_born = r->born;
    int skip = r->owner.known ? r->owner.skip : FILTER_ACTIVE;

    struct event *e = NULL;
    if (!skip && (!FILTER_LPORT || sport == FILTER_LPORT) && (!FILTER_RPORT || args->dport == FILTER_RPORT)) {
        e = events.ringbuf_reserve(sizeof(struct event));
        if (!e)
            eunomia_count_drop();
        else if (r->owner.known)
            __builtin_memcpy(&e->hdr, &r->owner.hdr, sizeof(e->hdr));
        else
            __builtin_memset(&e->hdr, 0, sizeof(e->hdr));
        struct state_key key = {.newstate = (u8)newstate};
        tcpstates_transitions_total.increment(key);
        if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN && was_born) {  /* connections, not listeners */
            u32 slot = bpf_log2l(lifetime);
            tcpstates_lifetime_seconds.increment(slot);
        }
    }

    /* Listeners by local port, for the connections accepted from them. */
    if (oldstate == TCP_CLOSE && newstate == TCP_LISTEN) {
        struct listen_key lk = {.family = family, .port = sport};
        struct listener l = {.skaddr = sk};
        __builtin_memcpy(&l.owner, &r->owner, sizeof(l.owner));
        if (listeners.update(&lk, &l) != 0)
            eunomia_count_drop();
    } else if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
        struct listen_key lk = {.family = family, .port = sport};
        struct listener *l = listeners.lookup(&lk);
        if (l && l->skaddr == sk)
            listeners.delete(&lk);
    }

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
