/* The address pair of a sock:/tcp: tracepoint as two 16-byte arrays (an IPv4 address in
 * the first 4 bytes, the rest zero), whatever the alignment of the destination. Plain C,
 * no maps. The source is the tracepoint's own arguments (args->saddr, args->saddr_v6 …).
 */
#ifndef EUNOMIA_INET_ADDR_H
#define EUNOMIA_INET_ADDR_H

#ifndef AF_INET
#define AF_INET 2
#endif

static __always_inline void inet_addr_pair(u8 *saddr, u8 *daddr, u16 family, const void *saddr4,
                                           const void *daddr4, const void *saddr6, const void *daddr6)
{
    if (family == AF_INET) {
        __builtin_memset(saddr, 0, 16);
        __builtin_memset(daddr, 0, 16);
        bpf_probe_read_kernel(saddr, 4, saddr4);
        bpf_probe_read_kernel(daddr, 4, daddr4);
    } else {
        bpf_probe_read_kernel(saddr, 16, saddr6);
        bpf_probe_read_kernel(daddr, 16, daddr6);
    }
}

#endif /* EUNOMIA_INET_ADDR_H */
