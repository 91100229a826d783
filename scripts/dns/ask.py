#!/usr/bin/env python3
"""ask.py SERVER NAME [A|AAAA|PTR] [--tcp]: one DNS query (stdlib only, raw wire format).
Prints the rcode name, then one line per answer: TTL and data (an address, or a PTR name)."""
import socket, struct, sys

server, name = sys.argv[1], sys.argv[2]
qtype = {"A": 1, "AAAA": 28, "PTR": 12}[(sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else "A")]
tcp = "--tcp" in sys.argv
q = struct.pack("!HHHHHH", 0x4e48, 0x0100, 1, 0, 0, 0)
for label in name.rstrip(".").split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack("!HH", qtype, 1)
fam = socket.AF_INET6 if ":" in server else socket.AF_INET
if tcp:
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3); s.connect((server, 53))
    s.sendall(struct.pack("!H", len(q)) + q)
    n = struct.unpack("!H", s.recv(2))[0]; r = b""
    while len(r) < n: r += s.recv(n - len(r))
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, (server, 53))
    r = s.recv(4096)

def skip_name(p, off):
    while True:
        n = p[off]
        if n == 0: return off + 1
        if n & 0xC0 == 0xC0: return off + 2
        off += 1 + n

def read_name(p, off):
    labels = []
    while True:
        n = p[off]
        if n == 0: break
        if n & 0xC0 == 0xC0:
            off = ((n & 0x3F) << 8) | p[off + 1]; continue
        labels.append(p[off + 1:off + 1 + n].decode()); off += 1 + n
    return ".".join(labels)

_, flags, qd, an, _, _ = struct.unpack("!HHHHHH", r[:12])
print({0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(flags & 0xF, str(flags & 0xF)) + (" TC" if flags & 0x200 else ""))
off = 12
for _ in range(qd): off = skip_name(r, off) + 4
for _ in range(an):
    off = skip_name(r, off)
    t, _, ttl, rdlen = struct.unpack("!HHIH", r[off:off + 10]); off += 10
    rd = r[off:off + rdlen]
    if t == 1: data = socket.inet_ntop(socket.AF_INET, rd)
    elif t == 28: data = socket.inet_ntop(socket.AF_INET6, rd)
    elif t == 12: data = read_name(r, off)
    else: data = rd.hex()
    print(ttl, data); off += rdlen
