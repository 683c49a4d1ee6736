/* Who owns a TCP socket: shared by the TCP tracers (inlined by the loader, so maps work).
 *
 * Many TCP tracepoints run in softirq or timer context, where the current task is
 * whatever the CPU happened to interrupt. The owner is recorded from
 * sock:inet_sock_set_state while it is current, keyed by the socket's address (an
 * opaque key, never dereferenced):
 *   CLOSE → SYN_SENT   connect(2): the connecting task;
 *   CLOSE → LISTEN     listen(2): the listening task, also remembered per local port;
 *   LISTEN → SYN_RECV  a connection accepted from a listener (softirq): the task that
 *                      listened on that local port;
 *   → FIN_WAIT1, → LAST_ACK  close(2)/shutdown(2): the closing task, for a socket whose
 *                      owner was not known yet (it existed before the tracer started).
 *
 * Tracers with a per-socket record of their own (tcpstates, flows) embed a struct
 * socket_owner in it and use the listener functions; the others define
 * EUNOMIA_SOCKET_OWNERS before including this header and get the socket_owners map,
 * kept by socket_owners_track() from their inet_sock_set_state probe.
 */
#ifndef EUNOMIA_SOCKET_OWNER_H
#define EUNOMIA_SOCKET_OWNER_H

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

/* With -p, -n or a cgroup filter, a socket whose owner is unknown cannot match: it is left out. */
#define EUNOMIA_OWNER_FILTER_ACTIVE (EUNOMIA_FILTER_PID != 0 || EUNOMIA_FILTER_COMM_SET != 0 || EUNOMIA_FILTER_CGROUP != 0)

struct socket_owner {
    struct eunomia_header hdr;  /* the owning task's; hdr.ts unused */
    u8 known;                   /* 0: not known (yet) */
    u8 skip;                    /* the owner is the agent, or outside -p/-n */
};

struct socket_listen_key {
    u16 family;
    u16 port;
};

struct socket_listener {
    struct socket_owner owner;
    u64 skaddr;
};

BPF_TABLE("lru_hash", struct socket_listen_key, struct socket_listener, socket_listeners, 4096);

static __always_inline void socket_owner_from_current(struct socket_owner *o)
{
    o->skip = eunomia_skip_current();
    eunomia_fill_header(&o->hdr);
    o->known = 1;
}

/* 1 if the events of a socket with this owner are left out (agent, -p/-n). */
static __always_inline int socket_owner_skipped(const struct socket_owner *o)
{
    return o && o->known ? o->skip : EUNOMIA_OWNER_FILTER_ACTIVE;
}

/* Copy the owner into an event header, or zeros when it is not known. */
static __always_inline void socket_owner_header(struct eunomia_header *h, const struct socket_owner *o)
{
    if (o && o->known)
        __builtin_memcpy(h, &o->hdr, sizeof(*h));
    else
        __builtin_memset(h, 0, sizeof(*h));
}

/* listen(2) on (family, port): connections accepted there belong to this owner. */
static __always_inline void socket_listener_add(u16 family, u16 port, u64 sk, const struct socket_owner *o)
{
    struct socket_listen_key lk = {.family = family, .port = port};
    struct socket_listener l = {.skaddr = sk};
    __builtin_memcpy(&l.owner, o, sizeof(l.owner));
    if (socket_listeners.update(&lk, &l) != 0)
        eunomia_count_drop();
}

/* The listening socket sk is closed (another may listen on the port by now). */
static __always_inline void socket_listener_remove(u16 family, u16 port, u64 sk)
{
    struct socket_listen_key lk = {.family = family, .port = port};
    struct socket_listener *l = socket_listeners.lookup(&lk);
    if (l && l->skaddr == sk)
        socket_listeners.delete(&lk);
}

/* The owner of a connection accepted on (family, port): copied into *o, 1 if known. */
static __always_inline int socket_listener_owner(u16 family, u16 port, struct socket_owner *o)
{
    struct socket_listen_key lk = {.family = family, .port = port};
    struct socket_listener *l = socket_listeners.lookup(&lk);
    if (!l)
        return 0;
    __builtin_memcpy(o, &l->owner, sizeof(*o));
    return 1;
}

#ifdef EUNOMIA_SOCKET_OWNERS
BPF_TABLE("lru_hash", u64, struct socket_owner, socket_owners, 65536);

static __always_inline struct socket_owner *socket_owner_of(u64 sk)
{
    return socket_owners.lookup(&sk);
}

static __always_inline void socket_owner_remember(u64 sk, const struct socket_owner *o)
{
    if (socket_owners.update(&sk, o) != 0)
        eunomia_count_drop();
}

/* Call from TRACEPOINT_PROBE(sock, inet_sock_set_state) for every TCP state change. */
static __always_inline void socket_owners_track(u64 sk, u16 family, u16 sport, int oldstate, int newstate)
{
    struct socket_owner o = {};
    if (newstate == TCP_CLOSE) {
        socket_owners.delete(&sk);
        if (oldstate == TCP_LISTEN)
            socket_listener_remove(family, sport, sk);
        return;
    }
    if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) {
        socket_owner_from_current(&o);  /* connect(2) or listen(2): the owner is current */
        socket_owner_remember(sk, &o);
        if (newstate == TCP_LISTEN)
            socket_listener_add(family, sport, sk, &o);
        return;
    }
    if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
        if (socket_listener_owner(family, sport, &o))
            socket_owner_remember(sk, &o);
        return;
    }
    if ((newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) && !socket_owners.lookup(&sk)) {
        socket_owner_from_current(&o);  /* close(2)/shutdown(2) of a socket older than the tracer */
        socket_owner_remember(sk, &o);
    }
}
#endif /* EUNOMIA_SOCKET_OWNERS */

#endif /* EUNOMIA_SOCKET_OWNER_H */
