// Package sealed is ghostcomm's second wire format, "sealed": fixed-size
// packets with one X25519 per hop, in the manner of Sphinx (Danezis and
// Goldberg 2009) with X25519 used as a KEM (KEMSphinx, Outfox), a LIONESS
// payload and replies re-enciphered by every hop on the way back.
//
// A packet is exactly its class's size (Small, 2048 bytes, or Large, 32768
// bytes) for every route of 1..MaxHops hops:
//
//	ver(1) ‖ α(32) ‖ β(MaxHops×SlotSize) ‖ γ(16) ‖ payload
//
// α is the hop's ephemeral X25519 public key, β the encrypted routing block
// (one 88-byte slot per hop, filled with random bytes past the route), γ the
// truncated HMAC-SHA256 of ver‖α‖β. A slot is
//
//	cmd(1) ‖ next(1) ‖ budget ms(4) ‖ flags(2) ‖ link key(32) ‖ next γ(16) ‖ next α(32)
//
// A hop (Process) computes s = X25519(sk, α), derives its keys with
// HKDF-SHA256, checks γ, only then records the replay tag, decrypts β with
// AES-256-CTR and shifts its slot off, and LIONESS-decrypts the payload, all
// in place: the packet it forwards has the same size and shares no byte
// position with its input beyond chance and the version byte.
//
// Two modes: in Relay mode only the exit sees the data (the client
// encrypts the payload once for every hop); in Chain mode every hop opens
// the data (Result.Data), processes it and reseals it for the next hop
// (Result.Reseal) under the link key its slot carries.
//
// A reply has its class's size too. Its author (the exit, or a hop that
// fails) writes 0¹⁶ ‖ type ‖ len ‖ body under LIONESS with its backward
// key (Result.Answer, Result.Fail); every hop before it adds its own layer
// (Result.WrapReply), without public-key work; the client (Sent.OpenReply)
// peels layers until the zero tag shows, and the depth at which it shows is
// the author's position on the route.
//
// The byte layouts, the algorithms and the security argument are in
// docs/PROTOCOL.md, section "Sealed mode"; vectors are in
// testdata/sealed.
package sealed
