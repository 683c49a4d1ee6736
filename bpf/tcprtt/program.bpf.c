/* tcprtt: the smoothed round-trip time of TCP connections as a log2 histogram in the
 * kernel, like bcc's tcprtt, from tcp:tcp_probe.
 *
 * tcp_probe fires in tcp_rcv_established() for every segment an ESTABLISHED socket
 * receives (data or pure ACK), with the socket's addresses and ports and its srtt, which
 * the tracepoint stores as tp->srtt_us >> 3: microseconds (the kernel keeps srtt in
 * 1/8 µs). It runs in softirq, where the current task is unrelated to the socket: the
 * owner comes from sock:inet_sock_set_state, kept in a map keyed by the socket's address
 * (an opaque key, never dereferenced), as in tcpretrans: the task that called connect()
 * or listen(); for a connection accepted from a listener, the task that listened on its
 * local port; for a socket opened before the tracer started, the task that closes it.
 * The -p/--pid and -n/--comm filters apply to that owner; sockets of unknown owner are
 * left out under them.
 *
 * With -b/-B the histogram is split by local/remote address, rendered as text in the
 * kernel (metric labels are integers or strings): each socket's text is made once and
 * cached by its sock_cookie, which the kernel never reuses.
 */
#define EUNOMIA_SOCKET_OWNERS
#include "socket_owner.h"

#define ADDR_TEXT_LEN 40

#ifndef FILTER_LPORT
#define FILTER_LPORT 0
#endif
#ifndef FILTER_RPORT
#define FILTER_RPORT 0
#endif
#ifndef BY_LADDR
#define BY_LADDR 0
#endif
#ifndef BY_RADDR
#define BY_RADDR 0
#endif
#ifndef BY_LPORT
#define BY_LPORT 0
#endif
#ifndef BY_RPORT
#define BY_RPORT 0
#endif
#ifndef EMIT_EVENTS
#define EMIT_EVENTS 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 sock_cookie;
    u32 srtt_us;
    u32 snd_cwnd;
    u16 family;
    u16 lport;
    u16 rport;
    u8 laddr[16];
    u8 raddr[16];
};

#include "inet_text.h"  /* format_addr(): an address as inet_ntop(3) writes it */
}

/* -------- socket owners (bpf/include/socket_owner.h) -------- */

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol == IPPROTO_TCP)
        socket_owners_track((u64)args->skaddr, args->family, args->sport, args->oldstate, args->newstate);
    return 0;
}

/* -------- the histogram -------- */

struct hist_key {
    u64 cgroup_id;  /* the socket owner's (0: not known), not the task the softirq interrupted */
    u16 lport;
    u16 rport;
    char laddr[ADDR_TEXT_LEN];
    char raddr[ADDR_TEXT_LEN];
    u32 slot;
};
BPF_HASH(tcprtt_srtt_seconds, struct hist_key, u64, 10240);

struct addr_texts {
    char laddr[ADDR_TEXT_LEN];
    char raddr[ADDR_TEXT_LEN];
};
BPF_TABLE("lru_hash", u64, struct addr_texts, texts, 16384);  /* sock_cookie → addresses as text */

struct work {  /* too big for the 512-byte stack */
    u8 sa[28];
    u8 da[28];
    u8 laddr[16];
    u8 raddr[16];
    struct hist_key key;
    struct addr_texts texts;
    struct addr_text text;
};
BPF_PERCPU_ARRAY(work_scratch, struct work, 1);

/* The address inside a struct sockaddr_in or sockaddr_in6, as tcp_probe stores them. */
static __always_inline void sockaddr_addr(u8 out[16], const u8 sa[28], u16 family)
{
    if (family == AF_INET) {
        __builtin_memset(out, 0, 16);
        __builtin_memcpy(out, sa + 4, 4);    /* sin_family, sin_port, sin_addr */
    } else {
        __builtin_memcpy(out, sa + 8, 16);   /* sin6_family, sin6_port, sin6_flowinfo, sin6_addr */
    }
}

TRACEPOINT_PROBE(tcp, tcp_probe)
{
    u16 family = args->family;
    if (family != AF_INET && family != AF_INET6)
        return 0;
    u16 lport = args->sport;
    u16 rport = args->dport;
    if ((FILTER_LPORT && lport != FILTER_LPORT) || (FILTER_RPORT && rport != FILTER_RPORT))
        return 0;
    u64 sk = (u64)args->skaddr;
    struct socket_owner *o = socket_owner_of(sk);
    if (socket_owner_skipped(o))
        return 0;
    u32 srtt = args->srtt;
    u64 cookie = args->sock_cookie;

    int zero = 0;
    struct work *w = work_scratch.lookup(&zero);
    if (!w)
        return 0;
    /* The tracepoint's own sockaddr arrays, copied with a helper (daddr sits unaligned). */
    bpf_probe_read_kernel(w->sa, sizeof(w->sa), args->saddr);
    bpf_probe_read_kernel(w->da, sizeof(w->da), args->daddr);
    sockaddr_addr(w->laddr, w->sa, family);
    sockaddr_addr(w->raddr, w->da, family);
    struct hist_key *key = &w->key;
    __builtin_memset(key, 0, sizeof(*key));
    key->cgroup_id = o && o->known ? o->hdr.cgroup_id : 0;
    key->lport = BY_LPORT ? lport : 0;
    key->rport = BY_RPORT ? rport : 0;
    key->slot = bpf_log2l(srtt);
#if BY_LADDR || BY_RADDR
    struct addr_texts *t = texts.lookup(&cookie);
    if (!t) {
        t = &w->texts;
        __builtin_memset(t, 0, sizeof(*t));
        if (BY_LADDR) {
            format_addr(w->text.s, family, w->laddr);
            __builtin_memcpy(t->laddr, w->text.s, ADDR_TEXT_LEN);
        }
        if (BY_RADDR) {
            format_addr(w->text.s, family, w->raddr);
            __builtin_memcpy(t->raddr, w->text.s, ADDR_TEXT_LEN);
        }
        if (texts.update(&cookie, t) != 0)
            eunomia_count_drop();
    }
    __builtin_memcpy(key->laddr, t->laddr, ADDR_TEXT_LEN);
    __builtin_memcpy(key->raddr, t->raddr, ADDR_TEXT_LEN);
#endif
    u64 zero64 = 0;
    u64 *count = tcprtt_srtt_seconds.lookup_or_try_init(key, &zero64);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */

    if (!EMIT_EVENTS)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        eunomia_count_drop();
        return 0;
    }
    socket_owner_header(&e->hdr, o);
    e->hdr.ts = bpf_ktime_get_ns();
    e->sock_cookie = cookie;
    e->srtt_us = srtt;
    e->snd_cwnd = args->snd_cwnd;
    e->family = family;
    e->lport = lport;
    e->rport = rport;
    __builtin_memcpy(e->laddr, w->laddr, 16);
    __builtin_memcpy(e->raddr, w->raddr, 16);
    eunomia_submit(e, sizeof(*e));
    return 0;
}
