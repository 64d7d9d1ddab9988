/* The per-packet core of a worker's data path, in C (docs/performance.md, issue 19).
 *
 * Python pays about a microsecond per call and per object; a batch of 64 packets through
 * the pure-Python path costs hundreds of them. Each function here takes a whole batch:
 * read packets from the TUN and seal them into DTLS or TLS records (sending DTLS with
 * UDP_SEGMENT), or open a run of received records and write the packets to the TUN with the
 * same TCP coalescing as worker/gro.py. Record formats, nonces, AADs, the replay window and
 * the coalescing rules are those of protocol/dtls/record.py, protocol/tls/record.py and
 * worker/gro.py, byte for byte; tests/unit/test_native.py runs both against each other.
 *
 * Every function handles only the common case and stops, without consuming it, at the first
 * record that is anything else (a control frame, a bad tag, a handshake record, a partial
 * record): the caller hands the rest to the Python reference path, which decides what that
 * record means. So no protocol decision is made twice, and none here.
 *
 * The AEAD is the system OpenSSL's EVP interface; a context is keyed once per session and
 * direction, and only the nonce changes per record.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define TAG_LEN 16
#define DTLS_HDR 13
#define TLS_HDR 5
#define CT_APPLICATION_DATA 23
#define DTLS12 0xFEFD
#define TLS12 0x0303
#define SEQ_MASK ((1ULL << 48) - 1)
#define MAX_PLAINTEXT 16384
#define MAX_CIPHERTEXT (16384 + 2048)
#define MAX_READ 65535 /* what the Python path asks os.read for */
#define VNET_HDR_LEN 10
#define MAX_GSO_SEGMENTS 64
#define MAX_GSO_BYTES 65000
#define RECV_BATCH 64
#define MAX_SEGS 64 /* gro.py */
#define MAX_GSO 65535

/* TLS record kinds (the caller's RecordLayer state) */
#define MODE_TLS12_GCM 0
#define MODE_TLS12_CHACHA 1
#define MODE_TLS13 2

/* ------------------------------------------------------------------ buffers */

/* One worker serves one session from one thread: a few process-wide buffers, allocated on
 * first use, are all the memory this needs. */
#define SEAL_BUF (160 * 1024)
#define OPEN_BUF (128 * 1024)
#define RECV_BUF (65536 + 64)
static uint8_t *seal_buf, *open_buf, *recv_buf;

static int ensure_buffers(void) {
    if (seal_buf == NULL) seal_buf = PyMem_RawMalloc(SEAL_BUF);
    if (open_buf == NULL) open_buf = PyMem_RawMalloc(OPEN_BUF);
    if (recv_buf == NULL) recv_buf = PyMem_RawMalloc(RECV_BUF);
    if (seal_buf == NULL || open_buf == NULL || recv_buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static inline void put16(uint8_t *p, unsigned v) { p[0] = v >> 8; p[1] = v; }
static inline void put64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = v & 0xff; v >>= 8; }
}
static inline unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static inline uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

/* ------------------------------------------------------------------ the AEAD object */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
} AeadObject;

static void Aead_dealloc(AeadObject *self) {
    EVP_CIPHER_CTX_free(self->enc);
    EVP_CIPHER_CTX_free(self->dec);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Aead_init(AeadObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"key", "chacha", NULL};
    Py_buffer key;
    int chacha = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*p", kwlist, &key, &chacha)) return -1;
    const EVP_CIPHER *cipher = NULL;
    if (chacha && key.len == 32) cipher = EVP_chacha20_poly1305();
    else if (!chacha && key.len == 16) cipher = EVP_aes_128_gcm();
    else if (!chacha && key.len == 24) cipher = EVP_aes_192_gcm();
    else if (!chacha && key.len == 32) cipher = EVP_aes_256_gcm();
    if (cipher == NULL) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "unsupported AEAD key length");
        return -1;
    }
    EVP_CIPHER_CTX_free(self->enc);
    EVP_CIPHER_CTX_free(self->dec);
    self->enc = EVP_CIPHER_CTX_new();
    self->dec = EVP_CIPHER_CTX_new();
    int ok = self->enc && self->dec
        && EVP_EncryptInit_ex(self->enc, cipher, NULL, key.buf, NULL) == 1
        && EVP_DecryptInit_ex(self->dec, cipher, NULL, key.buf, NULL) == 1;
    PyBuffer_Release(&key);
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL refused the AEAD key");
        return -1;
    }
    return 0;
}

static PyTypeObject AeadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.vpn.native._fastpath.Aead",
    .tp_doc = "AES-GCM or ChaCha20-Poly1305 keyed once: Aead(key, chacha)",
    .tp_basicsize = sizeof(AeadObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Aead_init,
    .tp_dealloc = (destructor)Aead_dealloc,
};

static AeadObject *as_aead(PyObject *o) {
    if (!PyObject_TypeCheck(o, &AeadType) || ((AeadObject *)o)->enc == NULL) {
        PyErr_SetString(PyExc_TypeError, "expected an initialised Aead");
        return NULL;
    }
    return (AeadObject *)o;
}

/* out = E(in) (out may equal in), tag after it; 0 on success */
static int seal(EVP_CIPHER_CTX *c, const uint8_t nonce[12], const uint8_t *aad, int aad_len,
                const uint8_t *in, int n, uint8_t *out) {
    int l = 0, l2 = 0;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1) return -1;
    if (EVP_EncryptUpdate(c, NULL, &l, aad, aad_len) != 1) return -1;
    if (n && EVP_EncryptUpdate(c, out, &l, in, n) != 1) return -1;
    if (!n) l = 0;
    if (EVP_EncryptFinal_ex(c, out + l, &l2) != 1) return -1;
    return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + n) == 1 ? 0 : -1;
}

/* out = D(in[0:n]) if in[n:n+16] is the right tag; 0 on success */
static int open_(EVP_CIPHER_CTX *c, const uint8_t nonce[12], const uint8_t *aad, int aad_len,
                 const uint8_t *in, int n, uint8_t *out) {
    int l = 0, l2 = 0;
    uint8_t tag[TAG_LEN];
    memcpy(tag, in + n, TAG_LEN);
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1) return -1;
    if (EVP_DecryptUpdate(c, NULL, &l, aad, aad_len) != 1) return -1;
    if (n && EVP_DecryptUpdate(c, out, &l, in, n) != 1) return -1;
    if (!n) l = 0;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1) return -1;
    return EVP_DecryptFinal_ex(c, out + l, &l2) == 1 ? 0 : -1;
}

/* Copies the session's fixed IV out of the argument buffer and always releases it, so each
 * entry point has one exit path for it. */
static int take_iv(Py_buffer *iv, int want, uint8_t out[12]) {
    int ok = iv->len == want;
    if (ok)
        memcpy(out, iv->buf, iv->len);
    else
        PyErr_Format(PyExc_ValueError, "IV of %zd bytes, %d expected", iv->len, want);
    PyBuffer_Release(iv);
    return ok ? 0 : -1;
}

/* nonce = iv XOR seq (RFC 7905, RFC 8446 5.3) */
static inline void xor_nonce(uint8_t nonce[12], const uint8_t *iv, uint64_t seq) {
    memcpy(nonce, iv, 12);
    for (int i = 11; i >= 4; i--) { nonce[i] ^= seq & 0xff; seq >>= 8; }
}

/* ------------------------------------------------------------------ packets */

/* datapath.py's _is_activity: ICMP, IGMP and ICMPv6 are not user activity */
static int is_activity(const uint8_t *p, size_t n) {
    if (!n) return 0;
    int v = p[0] >> 4;
    if (v == 4 && n >= 20) return !(p[9] == 1 || p[9] == 2 || p[9] == 58);
    if (v == 6 && n >= 40) return !(p[6] == 1 || p[6] == 2 || p[6] == 58);
    return 1;
}

/* One packet from the TUN into dst (after its virtio_net_hdr when vnet). Returns the
 * packet's length, -1 on EAGAIN, -2 on another error (errno set). */
static ssize_t tun_read(int fd, uint8_t *dst, int vnet) {
    ssize_t r;
    if (vnet) {
        uint8_t hdr[VNET_HDR_LEN];
        struct iovec iov[2] = {{hdr, VNET_HDR_LEN}, {dst, MAX_READ - VNET_HDR_LEN}};
        r = readv(fd, iov, 2);
        if (r >= 0) return r > VNET_HDR_LEN ? r - VNET_HDR_LEN : 0;
    } else {
        r = read(fd, dst, MAX_READ);
        if (r >= 0) return r;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
}

/* --- writing to the TUN: worker/gro.py in C ----------------------------------------------- */

typedef struct { const uint8_t *p; uint32_t n; } pkt_t;

typedef struct {
    int fd, vnet, err; /* err: first errno the Python path would have raised */
    pkt_t run[MAX_SEGS];
    int nrun;
    unsigned th, size;
    uint32_t next_seq, total;
} tunw_t;

static const uint8_t PLAIN_HDR[VNET_HDR_LEN];

static void tun_writev(tunw_t *w, struct iovec *iov, int n) {
    /* one piece goes with write(), as os.write does: writev() of nothing sends nothing
     * on some descriptors where write() of nothing does (a zero-length datagram) */
    ssize_t r = n == 1 ? write(w->fd, iov[0].iov_base, iov[0].iov_len) : writev(w->fd, iov, n);
    if (r < 0) {
        /* a full queue or a packet the kernel refuses: drop this one (datapath.py) */
        if (errno != EAGAIN && errno != EINVAL && errno != EMSGSIZE && !w->err) w->err = errno;
    }
}

static void tun_plain(tunw_t *w, const uint8_t *p, uint32_t n) {
    struct iovec iov[2] = {{(void *)PLAIN_HDR, VNET_HDR_LEN}, {(void *)p, n}};
    if (w->vnet) tun_writev(w, iov, 2);
    else tun_writev(w, iov + 1, 1);
}

/* gro.py's _segment_key: 0 if the packet may not be merged */
static int seg_info(const uint8_t *p, uint32_t n, unsigned *th, uint32_t *seq, uint32_t *pl) {
    if (n < 40 || p[0] != 0x45 || p[9] != 6 || (p[6] & 0x3F) || p[7]) return 0;
    if (get16(p + 2) != n) return 0;
    unsigned t = (p[32] >> 4) * 4;
    if (t < 20 || n < 20 + t + 1) return 0;
    if ((p[33] & ~(0x10 | 0x08) & 0xFF) || !(p[33] & 0x10)) return 0;
    *th = t;
    *seq = (uint32_t)p[24] << 24 | (uint32_t)p[25] << 16 | (uint32_t)p[26] << 8 | p[27];
    *pl = n - 20 - t;
    return 1;
}

/* the flow key of gro.py: TOS, TTL, addresses, ports... no: ack, window and options too */
static int same_flow(const uint8_t *a, const uint8_t *b, unsigned th) {
    return a[1] == b[1] && a[8] == b[8] && memcmp(a + 12, b + 12, 12) == 0
        && memcmp(a + 28, b + 28, 4) == 0 && memcmp(a + 34, b + 34, 2) == 0
        && memcmp(a + 40, b + 40, th - 20) == 0;
}

static void run_flush(tunw_t *w) {
    if (w->nrun == 1) {
        tun_plain(w, w->run[0].p, w->run[0].n);
    } else if (w->nrun > 1) {
        const uint8_t *first = w->run[0].p;
        unsigned th = w->th;
        uint32_t payload = 0;
        for (int i = 0; i < w->nrun; i++) payload += w->run[i].n - 20 - th;
        uint8_t hdr[VNET_HDR_LEN + 20 + 60];
        uint8_t *v = hdr, *ip = hdr + VNET_HDR_LEN, *tcp = ip + 20;
        /* virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, csum_start, csum_off */
        unsigned hl = 20 + th;
        v[0] = 1; v[1] = 1;
        v[2] = hl & 0xff; v[3] = hl >> 8;
        v[4] = w->size & 0xff; v[5] = w->size >> 8;
        v[6] = 20; v[7] = 0; v[8] = 16; v[9] = 0;
        memcpy(ip, first, 20 + th);
        put16(ip + 2, 20 + th + payload);
        ip[10] = ip[11] = 0;
        uint32_t sum = 0;
        for (int i = 0; i < 20; i += 2) sum += get16(ip + i);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        put16(ip + 10, ~sum & 0xFFFF);
        tcp[13] |= w->run[w->nrun - 1].p[33] & 0x08;
        uint32_t ps = get16(first + 12) + get16(first + 14) + get16(first + 16)
            + get16(first + 18) + 6 + (th + payload);
        ps = (ps & 0xFFFF) + (ps >> 16);
        ps = (ps & 0xFFFF) + (ps >> 16);
        put16(tcp + 16, ps);
        struct iovec iov[MAX_SEGS + 1];
        iov[0].iov_base = hdr;
        iov[0].iov_len = VNET_HDR_LEN + 20 + th;
        for (int i = 0; i < w->nrun; i++) {
            iov[i + 1].iov_base = (void *)(w->run[i].p + 20 + th);
            iov[i + 1].iov_len = w->run[i].n - 20 - th;
        }
        tun_writev(w, iov, w->nrun + 1);
    }
    w->nrun = 0;
}

/* one packet into the coalescer (gro.py's coalesce loop body) */
static void tun_put(tunw_t *w, const uint8_t *p, uint32_t n) {
    if (!w->vnet) { tun_plain(w, p, n); return; }
    unsigned th;
    uint32_t seq, pl;
    int ok = seg_info(p, n, &th, &seq, &pl);
    if (ok && w->nrun && th == w->th && same_flow(p, w->run[0].p, th) && seq == w->next_seq
            && pl <= w->size && w->nrun < MAX_SEGS && w->total + pl <= MAX_GSO - 20 - w->th) {
        w->run[w->nrun].p = p;
        w->run[w->nrun].n = n;
        w->nrun++;
        w->next_seq += pl;
        w->total += pl;
        if (pl < w->size) run_flush(w);
        return;
    }
    run_flush(w);
    if (!ok) { tun_plain(w, p, n); return; }
    w->run[0].p = p;
    w->run[0].n = n;
    w->nrun = 1;
    w->th = th;
    w->size = pl;
    w->next_seq = seq + pl;
    w->total = pl;
}

/* ------------------------------------------------------------------ TUN -> DTLS */

/* Send records [start, end) of equal-size runs like dtlschannel.py's _raw_send; sizes[i] is
 * the length of record i, laid out back to back from base. */
static int udp_send_records(int fd, const uint8_t *base, const uint32_t *sizes, int count,
                            int *gso, uint64_t *sent_bytes) {
    int i = 0;
    const uint8_t *pos = base;
    while (i < count) {
        uint32_t size = sizes[i];
        int j = i + 1;
        size_t len = size;
        if (*gso) {
            int limit = count;
            if (limit > i + MAX_GSO_SEGMENTS) limit = i + MAX_GSO_SEGMENTS;
            int by_bytes = i + MAX_GSO_BYTES / (size ? size : 1);
            if (limit > by_bytes) limit = by_bytes;
            while (j < limit && sizes[j] == size) { len += sizes[j]; j++; }
            if (j < limit && sizes[j] < size) { len += sizes[j]; j++; }
        }
        ssize_t r;
        if (j - i == 1) {
            r = send(fd, pos, len, 0);
        } else {
            char cbuf[CMSG_SPACE(sizeof(uint16_t))];
            memset(cbuf, 0, sizeof cbuf);
            struct iovec iov = {(void *)pos, len};
            struct msghdr msg = {0};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf;
            msg.msg_controllen = sizeof cbuf;
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)size;
            memcpy(CMSG_DATA(cm), &seg, sizeof seg);
            r = sendmsg(fd, &msg, 0);
        }
        if (r >= 0) {
            *sent_bytes += len;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* socket buffer full: UDP may drop, TCP inside will recover */
        } else if ((errno == EIO || errno == EINVAL || errno == ENOPROTOOPT) && j - i > 1) {
            *gso = 0; /* the caller logs it; resend this run one by one */
            continue;
        } else if (errno != ECONNREFUSED && errno != EMSGSIZE && errno != ENOBUFS) {
            return errno;
        }
        pos += len;
        i = j;
    }
    return 0;
}

/* tun_to_dtls(tun_fd, udp_fd, aead, chacha, iv, epoch_seq, batch, vnet, gso)
 *   -> (packets, bytes, activity, next_epoch_seq, udp_bytes, gso, err, too_big)
 * Reads up to batch packets, seals each (type byte 0 + packet) in its own DTLS 1.2 record and
 * sends them. err: an errno the Python path would have raised (TUN read or UDP send);
 * too_big: a packet larger than a record stopped the batch (Python raises DtlsError). */
static PyObject *tun_to_dtls(PyObject *mod, PyObject *args) {
    int tun_fd, udp_fd, chacha, batch, vnet, gso;
    PyObject *aead_o;
    Py_buffer iv;
    unsigned long long es;
    if (!PyArg_ParseTuple(args, "iiOpy*Kipp", &tun_fd, &udp_fd, &aead_o, &chacha, &iv, &es,
                          &batch, &vnet, &gso))
        return NULL;
    uint8_t ivb[12];
    if (take_iv(&iv, chacha ? 12 : 4, ivb) < 0)
        return NULL;
    AeadObject *aead = as_aead(aead_o);
    if (aead == NULL || ensure_buffers() < 0)
        return NULL;
    if (batch > MAX_GSO_SEGMENTS * 4) batch = MAX_GSO_SEGMENTS * 4;
    uint32_t sizes[MAX_GSO_SEGMENTS * 4];
    int count = 0, activity = 0, err = 0, too_big = 0;
    uint64_t nbytes = 0, sent = 0;
    size_t off = 0;
    const size_t extra = chacha ? 0 : 8;
    const size_t room = DTLS_HDR + extra + 1 + MAX_READ + TAG_LEN;
    Py_BEGIN_ALLOW_THREADS
    while (count < batch && off + room <= SEAL_BUF) {
        uint8_t *rec = seal_buf + off;
        uint8_t *plain = rec + DTLS_HDR + extra;
        ssize_t n = tun_read(tun_fd, plain + 1, vnet);
        if (n == -1) break;
        if (n == -2) { err = errno; break; }
        if (n + 1 > MAX_PLAINTEXT) { too_big = 1; break; }
        nbytes += n;
        activity |= is_activity(plain + 1, n);
        plain[0] = 0;
        uint8_t aad[13];
        put64(aad, es);
        aad[8] = CT_APPLICATION_DATA;
        put16(aad + 9, DTLS12);
        put16(aad + 11, n + 1);
        uint8_t nonce[12];
        rec[0] = CT_APPLICATION_DATA;
        put16(rec + 1, DTLS12);
        put64(rec + 3, es);
        put16(rec + 11, n + 1 + extra + TAG_LEN);
        if (chacha) {
            xor_nonce(nonce, ivb, es);
        } else {
            memcpy(nonce, ivb, 4);
            put64(nonce + 4, es);
            put64(rec + DTLS_HDR, es);
        }
        if (seal(aead->enc, nonce, aad, 13, plain, n + 1, plain) < 0) { err = -1; break; }
        es++; /* the caller checked that the batch cannot run out of numbers */
        sizes[count++] = DTLS_HDR + extra + n + 1 + TAG_LEN;
        off += sizes[count - 1];
    }
    if (count && err >= 0) {
        int e = udp_send_records(udp_fd, seal_buf, sizes, count, &gso, &sent);
        if (e && !err) err = e;
    }
    Py_END_ALLOW_THREADS
    if (err < 0) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AEAD seal failed");
        return NULL;
    }
    return Py_BuildValue("iKiKKiii", count, (unsigned long long)nbytes, activity,
                         (unsigned long long)es, (unsigned long long)sent, gso, err, too_big);
}

/* ------------------------------------------------------------------ DTLS -> TUN */

typedef struct {
    uint64_t top_valid, top, bits; /* ReplayWindow with size 64: top -1 is !top_valid */
} window_t;

/* dtls_to_tun(udp_fd, tun_fd, aead, chacha, iv, epoch, top, bits, vnet)
 *   -> (payloads, bytes, activity, top, bits, udp_bytes, dropped, rest, err)
 * Reads the socket (UDP_GRO runs split into datagrams) and opens every datagram that is one
 * fresh application-data record carrying a data packet, writing the packets to the TUN
 * coalesced. At the first datagram that is anything else it stops reading: that datagram and
 * the rest of its GRO run come back in ``rest`` (a list of bytes) for the Python path.
 * dropped counts replays and bad tags, as open_many does. err: a TUN write errno to raise. */
static PyObject *dtls_to_tun(PyObject *mod, PyObject *args) {
    int udp_fd, tun_fd, chacha, epoch, vnet;
    PyObject *aead_o;
    Py_buffer iv;
    long long top_in;
    unsigned long long bits_in;
    if (!PyArg_ParseTuple(args, "iiOpy*iLKp", &udp_fd, &tun_fd, &aead_o, &chacha, &iv, &epoch,
                          &top_in, &bits_in, &vnet))
        return NULL;
    uint8_t ivb[12];
    if (take_iv(&iv, chacha ? 12 : 4, ivb) < 0)
        return NULL;
    AeadObject *aead = as_aead(aead_o);
    if (aead == NULL || ensure_buffers() < 0)
        return NULL;
    const size_t extra = chacha ? TAG_LEN : 8 + TAG_LEN;
    int64_t top = top_in;
    uint64_t bits = bits_in;
    int activity = 0, count = 0, dropped = 0;
    uint64_t nbytes = 0, udp_bytes = 0;
    size_t out = 0;
    const uint8_t *rest = NULL;
    size_t rest_len = 0, rest_seg = 0;
    static tunw_t w;
    w.fd = tun_fd;
    w.vnet = vnet;
    w.err = 0;
    w.nrun = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int reads = 0; reads < RECV_BATCH && rest == NULL; reads++) {
        char cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {recv_buf, 65535};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        ssize_t r = recvmsg(udp_fd, &msg, 0);
        if (r < 0) break; /* EAGAIN, or an ICMP error (ECONNREFUSED): the burst ends */
        udp_bytes += r;
        size_t seg = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO
                    && cm->cmsg_len >= CMSG_LEN(2)) {
                uint8_t *d = CMSG_DATA(cm);
                seg = cm->cmsg_len >= CMSG_LEN(4) ? (uint32_t)d[0] | (uint32_t)d[1] << 8
                    | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24 : (uint32_t)d[0] | d[1] << 8;
            }
        }
        if (!seg || (size_t)r <= seg) seg = (size_t)r;
        /* the whole run must fit the output buffer, or the packets so far go out first */
        if (out + (size_t)r > OPEN_BUF) {
            run_flush(&w);
            out = 0;
        }
        for (size_t pos = 0; pos < (size_t)r; pos += seg) {
            const uint8_t *d = recv_buf + pos;
            size_t end = (size_t)r - pos < seg ? (size_t)r - pos : seg;
            if (end <= DTLS_HDR || d[0] != CT_APPLICATION_DATA) goto slow;
            size_t length = get16(d + 11);
            uint64_t es = get64(d + 3);
            if (length + DTLS_HDR != end || get16(d + 1) != DTLS12
                    || (es >> 48) != (uint64_t)epoch || length < extra)
                goto slow;
            int64_t seq = (int64_t)(es & SEQ_MASK);
            int64_t diff = top - seq;
            if (diff >= 0 && (diff >= 64 || (bits >> diff) & 1)) { dropped++; continue; }
            uint8_t aad[13], nonce[12];
            put64(aad, es);
            aad[8] = CT_APPLICATION_DATA;
            put16(aad + 9, DTLS12);
            put16(aad + 11, length - extra);
            const uint8_t *ct;
            if (chacha) {
                xor_nonce(nonce, ivb, es);
                ct = d + DTLS_HDR;
            } else {
                memcpy(nonce, ivb, 4);
                memcpy(nonce + 4, d + DTLS_HDR, 8);
                ct = d + DTLS_HDR + 8;
            }
            size_t plen = length - extra;
            uint8_t *plain = open_buf + out;
            if (open_(aead->dec, nonce, aad, 13, ct, (int)plen, plain) < 0) {
                dropped++;
                continue;
            }
            if (plen == 0) goto accept; /* an empty record: opened, nothing to deliver */
            if (plain[0] != 0) goto slow; /* DPD, keepalive, BYE, compressed: not ours;
                                             the window is untouched, Python re-opens it */
        accept:
            if (diff < 0) {
                bits = diff <= -64 ? 1 : (bits << -diff) | 1;
                top = seq;
            } else {
                bits |= 1ULL << diff;
            }
            if (plen == 0) continue;
            count++;
            nbytes += plen - 1;
            activity |= is_activity(plain + 1, plen - 1);
            tun_put(&w, plain + 1, (uint32_t)(plen - 1));
            out += plen;
            continue;
        slow:
            rest = d;
            rest_len = (size_t)r - pos;
            rest_seg = seg;
            break;
        }
    }
    run_flush(&w);
    Py_END_ALLOW_THREADS
    PyObject *rest_list = PyList_New(0);
    if (rest_list == NULL) return NULL;
    for (size_t pos = 0; rest && pos < rest_len; pos += rest_seg) {
        size_t n = rest_len - pos < rest_seg ? rest_len - pos : rest_seg;
        PyObject *b = PyBytes_FromStringAndSize((const char *)rest + pos, n);
        if (b == NULL || PyList_Append(rest_list, b) < 0) {
            Py_XDECREF(b);
            Py_DECREF(rest_list);
            return NULL;
        }
        Py_DECREF(b);
    }
    return Py_BuildValue("iKiLKKiNi", count, (unsigned long long)nbytes, activity,
                         (long long)top, (unsigned long long)bits,
                         (unsigned long long)udp_bytes, dropped, rest_list, w.err);
}

/* ------------------------------------------------------------------ TUN -> TLS */

/* tun_to_tls(tun_fd, aead, mode, iv, seq, batch, vnet)
 *   -> (records, packets, bytes, activity, next_seq, err)
 * Reads up to batch packets and seals each as one CSTP data frame in its own TLS record
 * (openconnect drops records holding two frames), joined for a single send(). */
static PyObject *tun_to_tls(PyObject *mod, PyObject *args) {
    int tun_fd, mode, batch, vnet;
    PyObject *aead_o;
    Py_buffer iv;
    unsigned long long seq;
    if (!PyArg_ParseTuple(args, "iOiy*Kip", &tun_fd, &aead_o, &mode, &iv, &seq, &batch, &vnet))
        return NULL;
    uint8_t ivb[12];
    if (take_iv(&iv, mode == MODE_TLS12_GCM ? 4 : 12, ivb) < 0)
        return NULL;
    AeadObject *aead = as_aead(aead_o);
    if (aead == NULL || ensure_buffers() < 0)
        return NULL;
    const size_t extra = mode == MODE_TLS12_GCM ? 8 : 0;
    const size_t room = TLS_HDR + extra + 8 + MAX_READ + 1 + TAG_LEN;
    int count = 0, activity = 0, err = 0;
    uint64_t nbytes = 0;
    size_t off = 0;
    Py_BEGIN_ALLOW_THREADS
    while (count < batch && off + room <= SEAL_BUF) {
        uint8_t *rec = seal_buf + off;
        uint8_t *plain = rec + TLS_HDR + extra;
        ssize_t n = tun_read(tun_fd, plain + 8, vnet);
        if (n == -1) break;
        if (n == -2) { err = errno; break; }
        /* the CSTP frame header: STF 1, length, type DATA, 0 */
        memcpy(plain, "STF\x01", 4);
        put16(plain + 4, n);
        plain[6] = plain[7] = 0;
        size_t pn = n + 8;
        uint8_t aad[13], nonce[12];
        int aad_len = 13;
        if (mode == MODE_TLS13) {
            plain[pn++] = CT_APPLICATION_DATA;
            rec[0] = CT_APPLICATION_DATA;
            put16(rec + 1, TLS12);
            put16(rec + 3, pn + TAG_LEN);
            memcpy(aad, rec, TLS_HDR);
            aad_len = TLS_HDR;
            xor_nonce(nonce, ivb, seq);
        } else {
            put64(aad, seq);
            aad[8] = CT_APPLICATION_DATA;
            put16(aad + 9, TLS12);
            put16(aad + 11, pn);
            rec[0] = CT_APPLICATION_DATA;
            put16(rec + 1, TLS12);
            put16(rec + 3, pn + extra + TAG_LEN);
            if (mode == MODE_TLS12_GCM) {
                put64(rec + TLS_HDR, seq);
                memcpy(nonce, ivb, 4);
                put64(nonce + 4, seq);
            } else {
                xor_nonce(nonce, ivb, seq);
            }
        }
        if (seal(aead->enc, nonce, aad, aad_len, plain, (int)pn, plain) < 0) { err = -1; break; }
        seq++;
        count++;
        nbytes += n;
        activity |= is_activity(plain + 8, n);
        off += TLS_HDR + extra + pn + TAG_LEN;
    }
    Py_END_ALLOW_THREADS
    if (err < 0) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AEAD seal failed");
        return NULL;
    }
    PyObject *records = PyBytes_FromStringAndSize((const char *)seal_buf, off);
    if (records == NULL) return NULL;
    return Py_BuildValue("NiKiKi", records, count, (unsigned long long)nbytes, activity,
                         seq, err);
}

/* ------------------------------------------------------------------ TLS -> TUN */

/* tls_to_tun(data, tun_fd, aead, mode, iv, seq, vnet)
 *   -> (consumed, next_seq, packets, bytes, activity, err)
 * Opens the leading records of data that each carry exactly one CSTP data frame and writes
 * the packets to the TUN coalesced; stops (without consuming it) at the first record that is
 * incomplete, too large, not application data, does not authenticate or holds anything but
 * one data frame. The caller feeds data[consumed:] to the Python record layer. */
static PyObject *tls_to_tun(PyObject *mod, PyObject *args) {
    Py_buffer data, iv;
    int tun_fd, mode, vnet;
    PyObject *aead_o;
    unsigned long long seq;
    if (!PyArg_ParseTuple(args, "y*iOiy*Kp", &data, &tun_fd, &aead_o, &mode, &iv, &seq, &vnet))
        return NULL;
    uint8_t ivb[12];
    AeadObject *aead = NULL;
    if (take_iv(&iv, mode == MODE_TLS12_GCM ? 4 : 12, ivb) < 0 || (aead = as_aead(aead_o)) == NULL
            || ensure_buffers() < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const uint8_t *d = data.buf;
    size_t end = data.len, pos = 0, out = 0;
    int count = 0, activity = 0;
    uint64_t nbytes = 0;
    static tunw_t w;
    w.fd = tun_fd;
    w.vnet = vnet;
    w.err = 0;
    w.nrun = 0;
    Py_BEGIN_ALLOW_THREADS
    while (end - pos >= TLS_HDR) {
        const uint8_t *h = d + pos;
        size_t length = get16(h + 3);
        if (h[0] != CT_APPLICATION_DATA || length > MAX_CIPHERTEXT) break;
        if (pos + TLS_HDR + length > end) break;
        uint8_t aad[13], nonce[12];
        int aad_len = 13;
        const uint8_t *ct = h + TLS_HDR;
        size_t plen;
        if (mode == MODE_TLS13) {
            if (length < TAG_LEN) break;
            plen = length - TAG_LEN;
            memcpy(aad, h, TLS_HDR);
            aad_len = TLS_HDR;
            xor_nonce(nonce, ivb, seq);
        } else {
            size_t extra = mode == MODE_TLS12_GCM ? 8 : 0;
            if (length < extra + TAG_LEN) break;
            plen = length - extra - TAG_LEN;
            put64(aad, seq);
            aad[8] = CT_APPLICATION_DATA;
            put16(aad + 9, TLS12);
            put16(aad + 11, plen);
            if (mode == MODE_TLS12_GCM) {
                memcpy(nonce, ivb, 4);
                memcpy(nonce + 4, ct, 8);
                ct += 8;
            } else {
                xor_nonce(nonce, ivb, seq);
            }
        }
        if (out + plen > OPEN_BUF) {
            run_flush(&w);
            out = 0;
        }
        uint8_t *plain = open_buf + out;
        if (open_(aead->dec, nonce, aad, aad_len, ct, (int)plen, plain) < 0) break;
        size_t flen = plen;
        if (mode == MODE_TLS13) {
            if (!flen || plain[flen - 1] != CT_APPLICATION_DATA) break;
            flen--;
        }
        /* exactly one CSTP data frame (datapath.py's _handle_plain fast case) */
        if (flen <= 8 || memcmp(plain, "STF\x01", 4) != 0 || plain[6] != 0
                || get16(plain + 4) != flen - 8)
            break;
        seq++;
        pos += TLS_HDR + length;
        count++;
        nbytes += flen - 8;
        activity |= is_activity(plain + 8, flen - 8);
        tun_put(&w, plain + 8, (uint32_t)(flen - 8));
        out += plen;
    }
    run_flush(&w);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return Py_BuildValue("nKiKii", (Py_ssize_t)pos, seq, count, (unsigned long long)nbytes,
                         activity, w.err);
}

/* ------------------------------------------------------------------ TUN writes */

/* write_tun(tun_fd, packets, vnet) -> err: the Python path's packets (control frames aside,
 * those it decided on itself) written like _write_tun, coalesced as gro.py does. */
static PyObject *write_tun(PyObject *mod, PyObject *args) {
    int tun_fd, vnet;
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "iO!p", &tun_fd, &PyList_Type, &packets, &vnet)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(packets);
    static tunw_t w;
    w.fd = tun_fd;
    w.vnet = vnet;
    w.err = 0;
    w.nrun = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyList_GET_ITEM(packets, i);
        if (!PyBytes_Check(b)) {
            run_flush(&w);
            PyErr_SetString(PyExc_TypeError, "packets must be bytes");
            return NULL;
        }
        tun_put(&w, (const uint8_t *)PyBytes_AS_STRING(b), (uint32_t)PyBytes_GET_SIZE(b));
    }
    run_flush(&w); /* the list holds the bytes alive until here */
    return PyLong_FromLong(w.err);
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"tun_to_dtls", tun_to_dtls, METH_VARARGS, "TUN packets sealed and sent as DTLS records"},
    {"dtls_to_tun", dtls_to_tun, METH_VARARGS, "DTLS data records opened into the TUN"},
    {"tun_to_tls", tun_to_tls, METH_VARARGS, "TUN packets sealed into CSTP/TLS records"},
    {"tls_to_tun", tls_to_tun, METH_VARARGS, "CSTP/TLS data records opened into the TUN"},
    {"write_tun", write_tun, METH_VARARGS, "packets written to the TUN, coalesced"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The worker's per-packet core (see _fastpath.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&AeadType) < 0) return NULL;
    /* Key a throwaway context now, in the importing (pre-fork, unsandboxed) process, so
     * that OpenSSL's one-time initialisation never runs under the worker's seccomp filter. */
    static const uint8_t zero[32];
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c != NULL) {
        EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, zero, NULL);
        EVP_CIPHER_CTX_reset(c);
        EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, zero, NULL);
        EVP_CIPHER_CTX_free(c);
    }
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&AeadType);
    if (PyModule_AddObject(m, "Aead", (PyObject *)&AeadType) < 0) {
        Py_DECREF(&AeadType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MODE_TLS12_GCM", MODE_TLS12_GCM);
    PyModule_AddIntConstant(m, "MODE_TLS12_CHACHA", MODE_TLS12_CHACHA);
    PyModule_AddIntConstant(m, "MODE_TLS13", MODE_TLS13);
    return m;
}
