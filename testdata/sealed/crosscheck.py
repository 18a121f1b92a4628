#!/usr/bin/env python3
"""Check testdata/sealed/vectors.json with a second, independent implementation.

Python's standard library only (no AES), so it checks what it can without
AES: the node keys (X25519, RFC 7748, written out below), the client's
ephemeral keys drawn from the named deterministic randomness, every hop's
shared secret and HKDF-SHA256 keys, every replay tag, and every header MAC:
gamma of the packet as built, and gamma of each hop's output under the next
hop's MAC key, which holds only if the routing block, its filler and the
shift are right. Run from the repository root:
python3 testdata/sealed/crosscheck.py
"""
import hashlib
import hmac
import json
import struct

P = 2**255 - 19
A24 = 121665


def x25519(k, u):
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        kt = (k >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def hkdf(secret, salt, info, n):
    prk = hmac.new(salt or bytes(32), secret, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:n]


class DetRand:
    def __init__(self, seed):
        self.seed, self.ctr, self.buf = seed.encode(), 0, b""

    def read(self, n):
        while len(self.buf) < n:
            self.buf += hashlib.sha256(self.seed + struct.pack(">Q", self.ctr)).digest()
            self.ctr += 1
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


HEADER, GAMMA_AT, BASE = 753, 737, (9).to_bytes(32, "little")
v = json.load(open("testdata/sealed/vectors.json"))
checked = 0
for c in v["cases"]:
    name, hops = c["name"], c["hops"]
    nodes = DetRand("nodes " + name)
    client = DetRand(c["client_rand_seed"])
    keys = []
    for h in hops:
        scalar = bytes.fromhex(h["scalar"])
        assert scalar == nodes.read(32), (name, "node scalar")
        pub = x25519(scalar, BASE)
        assert pub.hex() == h["public"], (name, "node public key")
        x = client.read(32)
        alpha = x25519(x, BASE)
        s = x25519(x, pub)
        assert s == x25519(scalar, alpha), (name, "shared secret")
        k = hkdf(s, b"", b"ghostcomm sealed v1 hop" + alpha + pub, 144)
        keys.append({"alpha": alpha, "mac": k[0:32], "tag": k[128:144]})
    pkt = bytes.fromhex(c["packet"])
    assert len(pkt) == c["class"] and pkt[0] == 1, name
    assert pkt[1:33] == keys[0]["alpha"], (name, "alpha of hop 1")
    assert hmac.new(keys[0]["mac"], pkt[:GAMMA_AT], hashlib.sha256).digest()[:16] == pkt[GAMMA_AT:HEADER], (name, "gamma of hop 1")
    for i, h in enumerate(hops):
        assert bytes.fromhex(h["replay_tag"]) == keys[i]["tag"], (name, i + 1, "replay tag")
        out = bytes.fromhex(h["output"])
        assert len(out) == c["class"], (name, i + 1, "output size")
        if i + 1 < len(hops):
            nk = keys[i + 1]
            assert out[1:33] == nk["alpha"], (name, i + 1, "next alpha")
            assert hmac.new(nk["mac"], out[:GAMMA_AT], hashlib.sha256).digest()[:16] == out[GAMMA_AT:HEADER], (name, i + 1, "next gamma")
        checked += 1
    for r in c["replies"]:
        assert len(bytes.fromhex(r)) == c["class"], (name, "reply size")
print("testdata/sealed/vectors.json: %d cases, %d hops: keys, tags and header MACs check" % (len(v["cases"]), checked))
