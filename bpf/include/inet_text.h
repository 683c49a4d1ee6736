/* inet_text.h: an IPv4/IPv6 address as text, in the kernel, for metric labels (which are
 * integers or strings). Plain C, no maps: tracers #include it (the include directory is on
 * the compiler path). Needs AF_INET defined by the includer. */
#ifndef EUNOMIA_INET_TEXT_H
#define EUNOMIA_INET_TEXT_H

/* Branch-free code: a branch per digit or group would multiply the paths the verifier
 * walks (two addresses per program run would exceed its limit), and loops that are not
 * unrolled keep the stack small. Every step writes its characters at buf[pos..]
 * unconditionally and advances pos only over the characters it keeps; whatever lies
 * beyond the final pos is cleared at the end. The result matches inet_ntop(3) (glibc). */
struct addr_text {
    char s[64];
};

/* 1 if x > c, without a branch (x, c < 2^63). The empty asm hides the value's origin
 * from the compiler, which would otherwise turn this back into a comparison. */
static __always_inline u64 gt(u64 x, u64 c)
{
    u64 d = c - x;
    asm volatile("" : "+r"(d));
    return d >> 63;
}

static __always_inline u64 eq(u64 x, u64 c)
{
    return 1 - gt(x, c) - gt(c, x);
}

/* Writes c at buf[pos]; keeps it (returns pos + 1) only if `keep`. */
static __always_inline u32 put_char(char *buf, u32 pos, u64 c, u64 keep)
{
    buf[pos & 63] = (char)c;
    return pos + (u32)keep;
}

/* A decimal 0..255 without leading zeros: writes 3 characters, keeps 1 to 3 (if `keep`). */
static __always_inline u32 put_dec8(char *buf, u32 pos, u64 v, u64 keep)
{
    u64 nd = 1 + gt(v, 9) + gt(v, 99);
#pragma unroll
    for (int k = 0; k < 3; k++) {
        u64 e = nd - 1 - k;  /* this character's power of ten; "negative" past the end */
        u64 pow = 1 + 9 * gt(e, 0) + 90 * gt(e, 1);
        buf[(pos + k) & 63] = '0' + (v / pow) % 10;
    }
    return pos + (u32)(nd * keep);
}

/* A 16-bit group in lowercase hex without leading zeros: writes 4, keeps 1 to 4 (if `keep`). */
static __always_inline u32 put_hex16(char *buf, u32 pos, u64 w, u64 keep)
{
    u64 nd = 1 + gt(w, 0xf) + gt(w, 0xff) + gt(w, 0xfff);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        u64 n = (w >> (((nd - 1 - k) & 3) * 4)) & 0xf;
        buf[(pos + k) & 63] = '0' + n + 39 * gt(n, 9);
    }
    return pos + (u32)(nd * keep);
}

static __always_inline u32 put_ipv4(char *buf, u32 pos, const u8 *a, u64 keep)
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (i)
            pos = put_char(buf, pos, '.', keep);
        pos = put_dec8(buf, pos, a[i], keep);
    }
    return pos;
}

/* The address as inet_ntop(3) (glibc) writes it: IPv4 dotted; IPv6 in lowercase hex
 * groups, the longest run (the first of equals) of two or more zero groups as "::", and
 * an IPv4-mapped (::ffff:a.b.c.d) or IPv4-compatible (::a.b.c.d) address with its IPv4
 * part dotted. buf ends NUL-terminated and zero-filled to 64 bytes (at most 40 used). */
static __always_inline void format_addr(char *buf, u16 family, const u8 *a)
{
    u32 pos = 0;
    if (family == AF_INET) {
        pos = put_ipv4(buf, pos, a, 1);
    } else {
        /* The first longest run of zero groups, scanning from the end: run = zero groups
         * from i on; >= lets an earlier run of equal length win. */
        u64 run = 0, best_base = 0, best_len = 0;
#pragma clang loop unroll(disable)
        for (int i = 7; i >= 0; i--) {
            u64 group = ((u64)a[2 * i] << 8) | a[2 * i + 1];
            run = (1 - gt(group, 0)) * (1 + run);
            u64 better = gt(run + 1, best_len);
            best_base += better * (i - best_base);
            best_len += better * (run - best_len);
        }
        u64 compress = gt(best_len, 1);
        u64 mapped = eq(best_len, 5) * eq(((u64)a[10] << 8) | a[11], 0xffff);  /* ::ffff:a.b.c.d */
        u64 v4tail = compress * eq(best_base, 0) * (eq(best_len, 6) + mapped);
#pragma clang loop unroll(disable)
        for (int i = 0; i < 8; i++) {
            u64 group = ((u64)a[2 * i] << 8) | a[2 * i + 1];
            u64 in_run = compress * gt(i + 1, best_base) * gt(best_base + best_len, i);
            u64 first = in_run * eq(i, best_base);
            u64 shown = (1 - in_run) * (i == 7 ? 1 - v4tail : 1);
            pos = put_char(buf, pos, ':', first + (i ? shown : 0));
            if (i == 6) {
                pos = put_hex16(buf, pos, group, shown * (1 - v4tail));
                pos = put_ipv4(buf, pos, a + 12, v4tail);
            } else {
                pos = put_hex16(buf, pos, group, shown);
            }
        }
        pos = put_char(buf, pos, ':', compress * eq(best_base + best_len, 8));
    }
#pragma clang loop unroll(disable)
    for (int i = 0; i < 64; i++)  /* clear from pos on */
        buf[i] &= (char)(0 - gt(pos, i));

#endif /* EUNOMIA_INET_TEXT_H */
