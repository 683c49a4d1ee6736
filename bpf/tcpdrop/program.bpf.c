/* tcpdrop: packets the kernel dropped, with the drop reason, from skb:kfree_skb.
 *
 * The tracepoint gives the reason, the EtherType, the code that dropped the packet and
 * the receiving socket (an opaque address), but no addresses or ports: those live in
 * the packet, which a tracer may not read. kfree_skb fires for every protocol, not only
 * TCP. The task is whoever was running: the caller for drops inside a system call
 * (closing a socket with unread data, a failed local send), otherwise whatever task a
 * softirq or timer interrupted.
 */
#include "eunomia.h"

#define SKB_DROP_REASON_NOT_SPECIFIED 2

/* BCC declares the tracepoint's `reason` as `enum skb_drop_reason`, which no header here
 * defines (and the kernel's must not be used): complete the type, 4 bytes as in tracefs. */
enum skb_drop_reason { EUNOMIA_SKB_DROP_REASON_U32 = 0x7fffffff };

#ifndef INCLUDE_ALL
#define INCLUDE_ALL 0
#endif

struct event {
    struct eunomia_header hdr;
    u64 location;
    u64 rx_sk;
    u32 reason;
    u16 protocol;
};

struct drop_key {
    u32 reason;
    u16 protocol;
};
BPF_HASH(tcpdrop_drops_total, struct drop_key, u64, 4096);

TRACEPOINT_PROBE(skb, kfree_skb)
{
    if (eunomia_skip_current())
        return 0;
    u32 reason = args->reason;
    u16 protocol = args->protocol;
    struct drop_key key;
    __builtin_memset(&key, 0, sizeof(key));  /* the padding is part of the map key */
    key.reason = reason;
    key.protocol = protocol;
    tcpdrop_drops_total.increment(key);
    if (!INCLUDE_ALL && reason == SKB_DROP_REASON_NOT_SPECIFIED)
        return 0;
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->location = (u64)args->location;
    e->rx_sk = (u64)args->rx_sk;
    e->reason = reason;
    e->protocol = protocol;
    eunomia_submit(e, sizeof(*e));
    return 0;
}
