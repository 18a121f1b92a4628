module github.com/ghostcomm/ghostcomm

go 1.26.8

require (
	github.com/ProtonMail/go-crypto v1.5.2
	github.com/ProtonMail/gopenpgp/v2 v2.11.1
	github.com/cretz/bine v0.2.0
	github.com/fernet/fernet-go v0.0.0-20240119011108-303da6aec611
	golang.org/x/net v0.62.0
	golang.org/x/sync v0.25.0
)

require (
	github.com/ProtonMail/go-mime v0.0.0-20230322103455-7d82a3887f2f // indirect
	github.com/cloudflare/circl v1.6.3 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
