/* memleak: outstanding user-space allocations of one process by allocation stack, like
 * bcc's memleak -p PID, from uprobes on libc's allocator.
 *
 * Entry probes keep the requested size per thread; the return probe (the allocating
 * thread is current, and its user stack is the caller's) gets the address, records
 * {size, stack} under it and counts the bytes and the call under that stack. free() (and
 * realloc(), for the block it replaces) looks the address up and counts the bytes and
 * the call as freed under the stack that allocated them. Counters only grow, so what is
 * outstanding per stack is allocated minus freed; both are drained maps (stack labels).
 * The stack id kept with a block is used at its free, possibly after reads of the maps.
 * The worker empties the stack map only when it is more than half full; a block
 * allocated before and freed after that moment is counted as freed under
 * "[stack evicted]" (unless its stack was recorded again in between).
 *
 * Nesting: glibc's realloc(NULL, n) and realloc of an mmapped block call malloc
 * internally; one pending size per thread, consumed by the first return, counts such a
 * block once. Blocks allocated before the tracer started are not known, so their frees
 * are not counted either.
 */
#include "eunomia.h"

#if !EUNOMIA_FILTER_PID
#error "memleak traces one process: give its pid with -p/--pid"
#endif
#ifndef MIN_SIZE
#define MIN_SIZE 0
#endif
#ifndef MAX_SIZE
#define MAX_SIZE 0
#endif

struct alloc_info {
    u64 size;
    u64 cgroup_id;  /* the allocating task's: its frees are counted under it */
    s32 user_stack;
    u32 pad;
};

struct stack_key {
    u64 cgroup_id;
    u32 pid;
    s32 user_stack;
};

BPF_STACK_TRACE(stacks, 16384);
BPF_HASH(pending, u32, u64, 10240);                   /* tid → size asked for */
BPF_HASH(pending_memptr, u32, u64, 10240);            /* tid → posix_memalign's result pointer */
BPF_HASH(pending_realloc, u32, u64, 10240);           /* tid → the block realloc() replaces */
BPF_F_TABLE("hash", u64, struct alloc_info, allocs, 1048576, BPF_F_NO_PREALLOC);  /* address → block */
BPF_HASH(memleak_allocated_bytes_total, struct stack_key, u64, 16384);
BPF_HASH(memleak_allocations_total, struct stack_key, u64, 16384);
BPF_HASH(memleak_freed_bytes_total, struct stack_key, u64, 16384);
BPF_HASH(memleak_frees_total, struct stack_key, u64, 16384);

static __always_inline void add_allocated(struct stack_key *key, u64 bytes)
{
    u64 zero = 0;
    u64 *total = memleak_allocated_bytes_total.lookup_or_try_init(key, &zero);
    u64 *calls = memleak_allocations_total.lookup_or_try_init(key, &zero);
    if (!total || !calls) {
        eunomia_count_drop();  /* a map is full until the next read drains it */
        return;
    }
    __sync_fetch_and_add(total, bytes);
    __sync_fetch_and_add(calls, 1);
}

static __always_inline void add_freed(struct stack_key *key, u64 bytes)
{
    u64 zero = 0;
    u64 *total = memleak_freed_bytes_total.lookup_or_try_init(key, &zero);
    u64 *calls = memleak_frees_total.lookup_or_try_init(key, &zero);
    if (!total || !calls) {
        eunomia_count_drop();
        return;
    }
    __sync_fetch_and_add(total, bytes);
    __sync_fetch_and_add(calls, 1);
}

static __always_inline int on_size(u64 size)
{
    if (eunomia_skip_current())
        return 0;
    if (size < MIN_SIZE || (MAX_SIZE && size > MAX_SIZE))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (pending.update(&tid, &size) != 0)
        eunomia_count_drop();
    return 0;
}

/* The block at `address` is gone: count it as freed under the stack that allocated it. */
static __always_inline void forget(u64 address)
{
    struct alloc_info *info = allocs.lookup(&address);
    if (!info)
        return;  /* not allocated while we traced (or filtered out by size) */
    struct alloc_info copy = *info;
    if (allocs.delete(&address) != 0)
        return;  /* freed concurrently (a double free): count it once */
    /* under the allocation's cgroup, so that allocated minus freed stays per series */
    struct stack_key key = {.cgroup_id = copy.cgroup_id, .pid = bpf_get_current_pid_tgid() >> 32,
                            .user_stack = copy.user_stack};
    add_freed(&key, copy.size);
}

static __always_inline void remember(struct pt_regs *ctx, u64 address)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *size = pending.lookup(&tid);
    if (!size)
        return;  /* filtered out, or an inner call already counted this block */
    struct alloc_info info = {.size = *size, .cgroup_id = eunomia_current_cgroup_id()};
    pending.delete(&tid);
    if (!address)
        return;  /* the allocation failed */
    info.user_stack = stacks.get_stackid(ctx, BPF_F_USER_STACK);
    if (allocs.update(&address, &info) != 0) {
        eunomia_count_drop();  /* too many live blocks: neither counted nor remembered */
        return;
    }
    struct stack_key key = {.cgroup_id = info.cgroup_id, .pid = bpf_get_current_pid_tgid() >> 32,
                            .user_stack = info.user_stack};
    add_allocated(&key, info.size);
}

int on_malloc(struct pt_regs *ctx)
{
    return on_size(PT_REGS_PARM1(ctx));
}

int on_calloc(struct pt_regs *ctx)
{
    return on_size(PT_REGS_PARM1(ctx) * PT_REGS_PARM2(ctx));
}

int on_aligned_alloc(struct pt_regs *ctx)  /* aligned_alloc(), memalign(): (alignment, size) */
{
    return on_size(PT_REGS_PARM2(ctx));
}

int on_posix_memalign(struct pt_regs *ctx)  /* (void **memptr, alignment, size) */
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 memptr = PT_REGS_PARM1(ctx);
    if (pending_memptr.update(&tid, &memptr) != 0) {
        eunomia_count_drop();
        return 0;
    }
    return on_size(PT_REGS_PARM3(ctx));
}

int on_realloc(struct pt_regs *ctx)  /* (ptr, size) */
{
    if (eunomia_skip_current())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 old = PT_REGS_PARM1(ctx);
    if (pending_realloc.update(&tid, &old) != 0) {
        eunomia_count_drop();
        return 0;
    }
    return on_size(PT_REGS_PARM2(ctx));
}

int on_alloc_return(struct pt_regs *ctx)  /* malloc, calloc, aligned_alloc, memalign, valloc, pvalloc */
{
    remember(ctx, PT_REGS_RC(ctx));
    return 0;
}

int on_posix_memalign_return(struct pt_regs *ctx)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *memptr = pending_memptr.lookup(&tid);
    if (!memptr)
        return 0;
    u64 where = *memptr;
    pending_memptr.delete(&tid);
    u64 address = 0;
    if (PT_REGS_RC(ctx) == 0)  /* 0 on success, then *memptr holds the block */
        bpf_probe_read_user(&address, sizeof(address), (void *)where);
    remember(ctx, address);
    return 0;
}

int on_realloc_return(struct pt_regs *ctx)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *old = pending_realloc.lookup(&tid);
    if (!old)
        return 0;
    u64 replaced = *old;
    pending_realloc.delete(&tid);
    u64 address = PT_REGS_RC(ctx);
    u64 *size = pending.lookup(&tid);
    /* the old block is gone when realloc succeeded, or when it freed it (size 0) */
    if (replaced && (address || (size && *size == 0)))
        forget(replaced);
    remember(ctx, address);
    return 0;
}

int on_free(struct pt_regs *ctx)
{
    if (eunomia_skip_current())
        return 0;
    u64 address = PT_REGS_PARM1(ctx);
    if (address)
        forget(address);
    return 0;
}
