package onionaddr

import (
	"errors"
	"math/big"
)

// This file validates an ed25519 public key the way tor does before it
// accepts an onion address (ed25519_validate_pubkey): the 32 bytes must
// decode to a point of the curve (RFC 8032, section 5.1.3), the point must
// not be the identity, and multiplying it by the group order l must give the
// identity, which proves it has no small-order (torsion) component. It also
// rejects the two kinds of non-canonical encoding (y >= p; x = 0 with the
// sign bit set).
//
// Public keys are public, so plain math/big (not constant time) is fine here.
// A check costs about 0.35 ms (BenchmarkParse); nothing parses addresses in a
// hot loop.

var (
	errNonCanonical = errors.New("non-canonical point encoding")
	errNotOnCurve   = errors.New("not a point of the curve")
	errIdentity     = errors.New("identity point")
	errTorsion      = errors.New("point has a torsion component")
)

var (
	fieldP  = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	bigOne  = big.NewInt(1)
	curveD  = newCurveD()
	twoD    = mod(new(big.Int).Lsh(curveD, 1))
	sqrtM1  = new(big.Int).Exp(big.NewInt(2), new(big.Int).Rsh(new(big.Int).Sub(fieldP, bigOne), 2), fieldP)
	sqrtExp = new(big.Int).Rsh(new(big.Int).Add(fieldP, big.NewInt(3)), 3)
	groupL  = newGroupOrder()
)

// newCurveD returns d = -121665/121666 mod p.
func newCurveD() *big.Int {
	inv := new(big.Int).ModInverse(big.NewInt(121666), fieldP)
	return mod(new(big.Int).Mul(big.NewInt(-121665), inv))
}

// newGroupOrder returns l = 2^252 + 27742317777372353535851937790883648493.
func newGroupOrder() *big.Int {
	c, _ := new(big.Int).SetString("27742317777372353535851937790883648493", 10)
	return c.Add(c, new(big.Int).Lsh(bigOne, 252))
}

func mod(x *big.Int) *big.Int { return x.Mod(x, fieldP) }

func mul(a, b *big.Int) *big.Int { return mod(new(big.Int).Mul(a, b)) }

func add(a, b *big.Int) *big.Int { return mod(new(big.Int).Add(a, b)) }

func sub(a, b *big.Int) *big.Int { return mod(new(big.Int).Sub(a, b)) }

// point is a point in extended twisted Edwards coordinates:
// x = X/Z, y = Y/Z, x*y = T/Z. Coordinates are kept in [0, p).
type point struct{ x, y, z, t big.Int }

func (p *point) setIdentity() {
	p.x.SetInt64(0)
	p.y.SetInt64(1)
	p.z.SetInt64(1)
	p.t.SetInt64(0)
}

func (p *point) isIdentity() bool {
	return p.x.Sign() == 0 && p.y.Cmp(&p.z) == 0
}

// calc holds the scratch space of the point arithmetic, so that the
// hundreds of field operations of one check do not each allocate.
type calc struct{ a, b, c, d, e, f, g, h, hi big.Int }

var (
	low255   = new(big.Int).Sub(new(big.Int).Lsh(bigOne, 255), bigOne)
	nineteen = big.NewInt(19)
)

// reduce sets z to z mod p for 0 <= z < p^2, using 2^255 = 19 (mod p).
func (k *calc) reduce(z *big.Int) {
	for z.BitLen() > 255 {
		k.hi.Rsh(z, 255)
		z.And(z, low255)
		k.hi.Mul(&k.hi, nineteen)
		z.Add(z, &k.hi)
	}
	if z.Cmp(fieldP) >= 0 {
		z.Sub(z, fieldP)
	}
}

func (k *calc) mul(z, x, y *big.Int) {
	z.Mul(x, y)
	k.reduce(z)
}

func (k *calc) add(z, x, y *big.Int) {
	z.Add(x, y)
	if z.Cmp(fieldP) >= 0 {
		z.Sub(z, fieldP)
	}
}

func (k *calc) sub(z, x, y *big.Int) {
	z.Sub(x, y)
	if z.Sign() < 0 {
		z.Add(z, fieldP)
	}
}

// addPoints sets r = p+q with the unified formula for a = -1
// ("add-2008-hwcd-3" of the Explicit-Formulas Database). It is complete on
// this curve because d is not a square, so it also doubles. r may alias p or q.
func (k *calc) addPoints(r, p, q *point) {
	k.sub(&k.e, &p.y, &p.x)
	k.sub(&k.f, &q.y, &q.x)
	k.mul(&k.a, &k.e, &k.f) // A = (Y1-X1)(Y2-X2)
	k.add(&k.e, &p.y, &p.x)
	k.add(&k.f, &q.y, &q.x)
	k.mul(&k.b, &k.e, &k.f) // B = (Y1+X1)(Y2+X2)
	k.mul(&k.e, &p.t, twoD)
	k.mul(&k.c, &k.e, &q.t) // C = T1*2d*T2
	k.add(&k.e, &p.z, &p.z)
	k.mul(&k.d, &k.e, &q.z) // D = 2*Z1*Z2
	k.sub(&k.e, &k.b, &k.a) // E = B-A
	k.sub(&k.f, &k.d, &k.c) // F = D-C
	k.add(&k.g, &k.d, &k.c) // G = D+C
	k.add(&k.h, &k.b, &k.a) // H = B+A
	k.mul(&r.x, &k.e, &k.f)
	k.mul(&r.y, &k.g, &k.h)
	k.mul(&r.z, &k.f, &k.g)
	k.mul(&r.t, &k.e, &k.h)
}

// scalarMult sets r = n*p by double-and-add. Variable time: see above.
func (k *calc) scalarMult(r *point, n *big.Int, p *point) {
	r.setIdentity()
	for i := n.BitLen() - 1; i >= 0; i-- {
		k.addPoints(r, r, r)
		if n.Bit(i) == 1 {
			k.addPoints(r, r, p)
		}
	}
}

// decodePoint decodes a canonical 32-byte point encoding (RFC 8032, 5.1.3).
func decodePoint(p *point, b []byte) error {
	if len(b) != 32 {
		return errNonCanonical
	}
	var be [32]byte // big-endian copy
	for i := range 32 {
		be[31-i] = b[i]
	}
	sign := uint(be[0] >> 7)
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be[:])
	if y.Cmp(fieldP) >= 0 {
		return errNonCanonical
	}
	// x^2 = (y^2 - 1) / (d*y^2 + 1); the denominator is never 0 because -1/d
	// is not a square.
	y2 := mul(y, y)
	u := sub(y2, bigOne)
	v := add(mul(curveD, y2), bigOne)
	x2 := mul(u, new(big.Int).ModInverse(v, fieldP))
	x := new(big.Int).Exp(x2, sqrtExp, fieldP)
	if mul(x, x).Cmp(x2) != 0 {
		x = mul(x, sqrtM1)
		if mul(x, x).Cmp(x2) != 0 {
			return errNotOnCurve
		}
	}
	if x.Sign() == 0 && sign == 1 {
		return errNonCanonical
	}
	if x.Bit(0) != sign {
		x = sub(fieldP, x)
	}
	p.x.Set(x)
	p.y.Set(y)
	p.z.SetInt64(1)
	p.t.Set(mul(x, y))
	return nil
}

// checkKey reports why b is not an ed25519 public key that tor would accept
// as an onion service identity, or nil if it is one.
func checkKey(b []byte) error {
	var p, r point
	if err := decodePoint(&p, b); err != nil {
		return err
	}
	if p.isIdentity() {
		return errIdentity
	}
	var k calc
	k.scalarMult(&r, groupL, &p)
	if !r.isIdentity() {
		return errTorsion
	}
	return nil
}
