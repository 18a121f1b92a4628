#!/usr/bin/env python3
"""Check testdata/vectors.json with a second, independent implementation.

Python's standard library only (no AES), so it checks what it can: the
built-in hash processor, the HKDF-SHA256 key derivations, the Fernet HMACs
and timestamps, the padding of answers and their token sizes, the frame
header, and the fixed PKESK prefix. Run from the repository root:
python3 testdata/crosscheck.py
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


def bucket(n):
    """The size an answer of n bytes is padded to (docs/PROTOCOL.md, Reply)."""
    for b in (256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20):
        if n <= b:
            return b
    return -(-n // (1 << 20)) * (1 << 20)


def token_size(plaintext_len):
    return 57 + 16 * (plaintext_len // 16 + 1)  # PKCS#7 adds 1..16 bytes


def check_answer(padded_hex, tok_hex, answer):
    p = bytes.fromhex(padded_hex)
    n = int.from_bytes(p[:4], "big")
    assert p[4:4 + n] == answer and len(p) == 4 + bucket(n) and not any(p[4 + n:]), padded_hex
    assert len(bytes.fromhex(tok_hex)) == token_size(len(p)) == bucket(n) + 73


check_answer(v["reply"]["padded"], v["reply"]["token"], bytes.fromhex(v["reply"]["plaintext"]))
check_answer(v["report"]["padded"], v["report"]["token"], bytes([v["report"]["code"], 0]))
assert len(v["reply"]["token"]) == len(v["report"]["token"])  # a short result looks like a report
for a in v["answer_sizes"]:
    assert a["token_size"] == token_size(4 + bucket(a["length"])), a
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
