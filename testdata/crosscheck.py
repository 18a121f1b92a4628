#!/usr/bin/env python3
"""Check testdata/vectors.json with a second, independent implementation.

Python's standard library only (no AES), so it checks what it can: the
built-in hash processor, the HKDF-SHA256 key derivations, the Fernet HMACs
and timestamps, the frame header, and the fixed PKESK prefix. Run from the
repository root:  python3 testdata/crosscheck.py
"""
import hashlib
import hmac
import json
import sys

v = json.load(open("testdata/vectors.json"))
H = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512,
     "sha3-256": hashlib.sha3_256, "sha3-512": hashlib.sha3_512}

for p in v["processors"]:
    data, params = bytes.fromhex(p["input"]), p["params"] or {}
    if p["name"] == "identity":
        out = data
    else:
        h, salt = H[params["alg"]], bytes.fromhex(params["salt"])
        d = h(salt + data).digest()
        for _ in range(int(params["rounds"]) - 1):
            d = h(salt + d).digest()
        out = d.hex().encode() if params["output"] == "hex" else d
    assert out.hex() == p["output"], p


def hkdf(key, info):
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()  # no salt: HashLen zeros
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


o = v["onion"]
for i, k in enumerate(o["layer_keys"]):
    assert hkdf(bytes.fromhex(k), b"ghostcomm v1 error").hex() == o["error_keys"][i]
assert hkdf(bytes.fromhex(o["layer_keys"][-1]), b"ghostcomm v1 reply").hex() == o["reply_key"]


def check_fernet(key_hex, tok_hex, ts=None):
    key, tok = bytes.fromhex(key_hex), bytes.fromhex(tok_hex)
    assert tok[0] == 0x80
    assert hmac.new(key[:16], tok[:-32], hashlib.sha256).digest() == tok[-32:]
    if ts is not None:
        assert int.from_bytes(tok[1:9], "big") == ts


check_fernet(v["reply"]["key"], v["reply"]["token"], v["reply"]["timestamp"])
check_fernet(v["report"]["key"], v["report"]["token"])
check_fernet(v["sealed_box"]["key"], v["sealed_box"]["box"][96 * 2:], v["sealed_box"]["timestamp"])

f = bytes.fromhex(v["frame"]["bytes"])
assert f[0] == 1 and f[1] == v["frame"]["type"]
assert int.from_bytes(f[2:6], "big") == v["frame"]["stream_id"]
assert int.from_bytes(f[6:10], "big") == len(f) - 10 and f[10:].hex() == v["frame"]["body"]

prefix = bytes([0xC1, 94, 3, 0, 0, 0, 0, 0, 0, 0, 0, 18, 0x01, 0x07, 0x40])
for box in (v["sealed_box"]["box"], v["onion"]["layer"], v["payload"]["sealed"], v["message"]["data"]):
    b = bytes.fromhex(box)
    assert b[:15] == prefix and b[47] == 48 and b[96] == 0x80

sizes = o["layer_sizes"]
assert all(a - b == 160 for a, b in zip(sizes, sizes[1:])), sizes
print("crosscheck: ok")
sys.exit(0)
