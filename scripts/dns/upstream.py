#!/usr/bin/env python3
"""Fake upstream DNS (raw wire format, stdlib only). Any A query -> 192.0.2.7 TTL 30;
names starting 'nx' -> NXDOMAIN; 'refuse' -> REFUSED; 'big' -> over UDP: TC=1 and no
answers, over TCP: 100 A records."""
import socket, struct, threading, sys
ADDR = sys.argv[1]

def qname_end(p, off):
    while p[off]:
        off += 1 + p[off]
    return off + 1

def answer(p, tcp):
    tid, flags, qd = struct.unpack('!HHH', p[:6])
    end = qname_end(p, 12) + 4
    q = p[12:end]
    label = p[13:13 + p[12]].decode(errors='replace')
    rd = flags & 0x0100
    rcode, tc, ans = 0, 0, []
    rr = b'\xc0\x0c' + struct.pack('!HHIH', 1, 1, 30, 4)
    if label.startswith('nx'): rcode = 3
    elif label.startswith('refuse'): rcode = 5
    elif label.startswith('big'):
        if tcp: ans = [rr + bytes([192, 0, 2, i]) for i in range(100)]
        else: tc = 1
    else: ans = [rr + bytes([192, 0, 2, 7])]
    fl = 0x8000 | rd | 0x0080 | (tc << 9) | rcode
    return struct.pack('!HHHHHH', tid, fl, 1, len(ans), 0, 0) + q + b''.join(ans)

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((ADDR, 53))
    while True:
        p, a = s.recvfrom(4096)
        try: s.sendto(answer(p, False), a)
        except OSError as e: print("udp send", e, file=sys.stderr)

def conn(c):
    with c:
        while True:
            h = c.recv(2)
            if len(h) < 2: return
            n = struct.unpack('!H', h)[0]; p = b''
            while len(p) < n: p += c.recv(n - len(p))
            r = answer(p, True); c.sendall(struct.pack('!H', len(r)) + r)

def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ADDR, 53)); s.listen(64)
    while True:
        c, _ = s.accept(); threading.Thread(target=conn, args=(c,), daemon=True).start()

threading.Thread(target=udp, daemon=True).start(); tcp()
