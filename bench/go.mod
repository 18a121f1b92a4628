module github.com/ghostcomm/ghostcomm/bench

go 1.26.8

replace github.com/ghostcomm/ghostcomm => ../

require (
	github.com/ProtonMail/go-crypto v1.5.2
	github.com/ProtonMail/gopenpgp/v2 v2.11.1
	github.com/btcsuite/btcd/btcec/v2 v2.1.0
	github.com/cloudflare/circl v1.6.3
	github.com/ghostcomm/ghostcomm v0.0.0-00010101000000-000000000000
	github.com/lightningnetwork/lightning-onion v1.2.1-0.20240712235311-98bd56499dfb
)

require (
	github.com/ProtonMail/go-mime v0.0.0-20230322103455-7d82a3887f2f // indirect
	github.com/aead/chacha20 v0.0.0-20180709150244-8b13a72661da // indirect
	github.com/btcsuite/btcd v0.22.0-beta.0.20220207191057-4dc4ff7963b4 // indirect
	github.com/btcsuite/btclog v0.0.0-20170628155309-84c8d2346e9f // indirect
	github.com/cretz/bine v0.2.0 // indirect
	github.com/decred/dcrd/dcrec/secp256k1/v4 v4.0.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
