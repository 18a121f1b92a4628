package ghostcomm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/wire"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// The test vectors in testdata/vectors.json describe every wire format with
// concrete bytes that a second implementation can check itself against
// (docs/PROTOCOL.md explains each). Regenerate them with
//
//	go test -run TestVectors -update
//
// Keys, ephemeral points and IVs come from crypto/rand, so regenerated
// vectors differ byte for byte; they must still pass.
var update = flag.Bool("update", false, "regenerate testdata/vectors.json")

const vectorsPath = "testdata/vectors.json"

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type vectors struct {
	Comment string            `json:"comment"`
	Keys    map[string]string `json:"keys"` // armored OpenPGP private keys

	SealedBox struct {
		Recipient string   `json:"recipient"`
		Box       hexBytes `json:"box"`
		Key       hexBytes `json:"key"`
		Timestamp int64    `json:"timestamp"`
		Plaintext hexBytes `json:"plaintext"`
	} `json:"sealed_box"`

	Onion struct {
		Route      []string   `json:"route"`
		Next       []int      `json:"next"`
		Timestamp  int64      `json:"timestamp"`
		PadLen     int        `json:"exit_padding_len"`
		Layer      hexBytes   `json:"layer"`
		LayerKeys  []hexBytes `json:"layer_keys"`
		ReplyKey   hexBytes   `json:"reply_key"`
		ErrorKeys  []hexBytes `json:"error_keys"`
		LayerSizes []int      `json:"layer_sizes"`
	} `json:"onion"`

	Reply struct {
		Key       hexBytes `json:"key"`
		Token     hexBytes `json:"token"`
		Timestamp int64    `json:"timestamp"`
		Plaintext hexBytes `json:"plaintext"`
		Padded    hexBytes `json:"padded"` // the token's plaintext
	} `json:"reply"`

	Report struct {
		Key    hexBytes `json:"key"`
		Token  hexBytes `json:"token"`
		Code   int      `json:"code"`
		Padded hexBytes `json:"padded"`
	} `json:"report"`

	// AnswerSizes gives, for answers of some lengths, the size of the
	// token that carries them (the bucket plus 73).
	AnswerSizes []answerSize `json:"answer_sizes"`

	Frame struct {
		Bytes    hexBytes `json:"bytes"`
		Type     int      `json:"type"`
		StreamID uint32   `json:"stream_id"`
		Body     hexBytes `json:"body"`
	} `json:"frame"`

	Message struct {
		Bytes    hexBytes `json:"bytes"`
		BudgetMS uint32   `json:"budget_ms"`
		Layer    hexBytes `json:"layer"`
		Data     hexBytes `json:"data"`
	} `json:"message"`

	PayloadRequest struct {
		Bytes  hexBytes `json:"bytes"`
		Nonce  hexBytes `json:"nonce"`
		Client string   `json:"client"`
	} `json:"payload_request"`

	Payload struct {
		Sealed             hexBytes `json:"sealed"`
		Client             string   `json:"client"`
		PrimaryFingerprint hexBytes `json:"primary_fingerprint"`
		Nonce              hexBytes `json:"nonce"`
		CycleID            hexBytes `json:"cycle_id"`
		NotBefore          int64    `json:"not_before"`
		NotAfter           int64    `json:"not_after"`
		GraceSeconds       int64    `json:"grace_seconds"`
		Nodes              []struct {
			ServiceID   string            `json:"service_id"`
			Port        int               `json:"port"`
			Fingerprint hexBytes          `json:"fingerprint"`
			Processor   string            `json:"processor"`
			Params      map[string]string `json:"params"`
			Operator    string            `json:"operator"`
			SealedKey   hexBytes          `json:"sealed_key,omitempty"`
		} `json:"nodes"`
		Protocol  string `json:"protocol"`
		Form      string `json:"form,omitempty"`
		MaxPacket int    `json:"max_packet,omitempty"`
	} `json:"payload"`

	Invite struct {
		String      string   `json:"string"`
		ServiceID   string   `json:"service_id"`
		Port        int      `json:"port"`
		Fingerprint hexBytes `json:"fingerprint"`
	} `json:"invite"`

	Processors []struct {
		Name   string            `json:"name"`
		Params map[string]string `json:"params"`
		Input  hexBytes          `json:"input"`
		Output hexBytes          `json:"output"`
	} `json:"processors"`
}

func TestVectors(t *testing.T) {
	if *update {
		generateVectors(t)
	}
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*layer.KeyPair{}
	for name, armored := range v.Keys {
		k, err := pgp.NewKeyFromArmored(armored)
		if err != nil {
			t.Fatalf("key %s: %v", name, err)
		}
		kp, err := layer.NewKeyPair(k)
		if err != nil {
			t.Fatalf("key %s: %v", name, err)
		}
		keys[name] = kp
	}

	t.Run("sealed box", func(t *testing.T) {
		sb := v.SealedBox
		o, err := layer.Open(keys[sb.Recipient].Dec, sb.Box)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(o.Msg, sb.Plaintext) || !bytes.Equal(o.Key[:], sb.Key) || o.TS != sb.Timestamp {
			t.Fatal("sealed box opens to other contents")
		}
		if len(sb.Box) != layer.PKESKSize+layer.FernetOverhead+(len(sb.Plaintext)/16+1)*16 {
			t.Fatalf("sealed box of %d bytes", len(sb.Box))
		}
	})

	t.Run("onion", func(t *testing.T) {
		on := v.Onion
		cur := []byte(on.Layer)
		for i, name := range on.Route {
			if len(cur) != on.LayerSizes[i] {
				t.Fatalf("hop %d: layer of %d bytes, want %d", i+1, len(cur), on.LayerSizes[i])
			}
			p, err := layer.Peel(keys[name].Dec, cur)
			if err != nil {
				t.Fatalf("hop %d: %v", i+1, err)
			}
			if !bytes.Equal(p.Key[:], on.LayerKeys[i]) || p.TS != on.Timestamp {
				t.Fatalf("hop %d: layer key or timestamp differ", i+1)
			}
			ek := p.Key.Derive(layer.PurposeError)
			if !bytes.Equal(ek[:], on.ErrorKeys[i]) {
				t.Fatalf("hop %d: error key differs", i+1)
			}
			if i < len(on.Route)-1 {
				if p.Next != on.Next[i] {
					t.Fatalf("hop %d: next %d, want %d", i+1, p.Next, on.Next[i])
				}
				cur = p.Inner
				continue
			}
			if p.Next != -1 || len(p.Msg) != 1+on.PadLen {
				t.Fatalf("last hop: next %d, %d bytes of exit layer", p.Next, len(p.Msg))
			}
			rk := p.Key.Derive(layer.PurposeReply)
			if !bytes.Equal(rk[:], on.ReplyKey) {
				t.Fatal("reply key differs")
			}
		}
	})

	t.Run("reply", func(t *testing.T) {
		var k layer.Key
		copy(k[:], v.Reply.Key)
		p, ts, err := layer.FernetOpen(&k, v.Reply.Token)
		if err != nil || !bytes.Equal(p, v.Reply.Padded) || ts != v.Reply.Timestamp {
			t.Fatalf("reply: %v", err)
		}
		msg, err := layer.UnpadAnswer(p)
		if err != nil || !bytes.Equal(msg, v.Reply.Plaintext) {
			t.Fatalf("reply: %v", err)
		}
		copy(k[:], v.Report.Key)
		p, _, err = layer.FernetOpen(&k, v.Report.Token)
		if err != nil || !bytes.Equal(p, v.Report.Padded) {
			t.Fatalf("report: %v", err)
		}
		msg, err = layer.UnpadAnswer(p)
		if err != nil || len(msg) != 2 || int(msg[0]) != v.Report.Code {
			t.Fatalf("report: %v %x", err, msg)
		}
		// A short result and a failure report: tokens of one size.
		if len(v.Reply.Token) != len(v.Report.Token) || len(v.Report.Token) != layer.AnswerSize(2) {
			t.Fatalf("reply token of %d bytes, report token of %d", len(v.Reply.Token), len(v.Report.Token))
		}
		for _, a := range v.AnswerSizes {
			if got := layer.AnswerSize(a.Length); got != a.TokenSize {
				t.Errorf("answer of %d bytes: token of %d bytes, vector says %d", a.Length, got, a.TokenSize)
			}
		}
	})

	t.Run("frame", func(t *testing.T) {
		f := v.Frame
		h, body, err := wire.ReadFrame(bytes.NewReader(f.Bytes), DefaultMaxFrameSize)
		if err != nil || int(h.Type) != f.Type || h.ID != f.StreamID || !bytes.Equal(body, f.Body) {
			t.Fatalf("frame: %v", err)
		}
		var buf bytes.Buffer
		wire.WriteFrame(&buf, wire.Type(f.Type), f.StreamID, f.Body)
		if !bytes.Equal(buf.Bytes(), f.Bytes) {
			t.Fatal("frame does not encode to the vector")
		}
	})

	t.Run("message", func(t *testing.T) {
		m, err := wire.ParseMsg(v.Message.Bytes)
		if err != nil || m.BudgetMS != v.Message.BudgetMS || !bytes.Equal(m.Layer, v.Message.Layer) || !bytes.Equal(m.Data, v.Message.Data) {
			t.Fatalf("message: %v", err)
		}
	})

	t.Run("payload request", func(t *testing.T) {
		r, err := parsePayloadRequest(v.PayloadRequest.Bytes)
		if err != nil || !bytes.Equal(r.nonce[:], v.PayloadRequest.Nonce) || !bytes.Equal(r.client, keys[v.PayloadRequest.Client].Raw) {
			t.Fatalf("payload request: %v", err)
		}
	})

	t.Run("payload", func(t *testing.T) {
		pv := v.Payload
		client := keys[pv.Client]
		o, err := layer.Open(client.Dec, pv.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		var pin Fingerprint
		copy(pin[:], pv.PrimaryFingerprint)
		p, _, err := openSignedPayload(o.Msg, pin)
		if err != nil {
			t.Fatal(err)
		}
		c := p.cycle
		if !bytes.Equal(p.nonce[:], pv.Nonce) || p.client != Fingerprint(client.Fpr) || !bytes.Equal(c.ID[:], pv.CycleID) ||
			c.NotBefore.Unix() != pv.NotBefore || c.NotAfter.Unix() != pv.NotAfter || int64(c.Grace/time.Second) != pv.GraceSeconds ||
			o.TS != pv.NotBefore || len(c.Nodes) != len(pv.Nodes) ||
			string(c.Protocol) != pv.Protocol || string(c.Sealed.Form) != pv.Form || c.Sealed.MaxPacket != pv.MaxPacket {
			t.Fatal("payload fields differ")
		}
		for i, n := range c.Nodes {
			w := pv.Nodes[i]
			fp := n.Fingerprint()
			if n.Onion.ServiceID != w.ServiceID || n.Onion.Port != w.Port || !bytes.Equal(fp[:], w.Fingerprint) ||
				n.Processor.Name != w.Processor || len(n.Processor.Params) != len(w.Params) || n.Operator != w.Operator ||
				!bytes.Equal(n.SealedKey, w.SealedKey) {
				t.Fatalf("node %d differs", i)
			}
			for k, val := range w.Params {
				if n.Processor.Params[k] != val {
					t.Fatalf("node %d parameter %s differs", i, k)
				}
			}
		}
	})

	t.Run("invite", func(t *testing.T) {
		inv, err := ParseInvite(v.Invite.String)
		if err != nil || inv.Primary.ServiceID != v.Invite.ServiceID || inv.Primary.Port != v.Invite.Port ||
			!bytes.Equal(inv.Fingerprint[:], v.Invite.Fingerprint) || inv.String() != v.Invite.String {
			t.Fatalf("invite: %v", err)
		}
	})

	t.Run("processors", func(t *testing.T) {
		for _, pv := range v.Processors {
			p, err := NewProcessor(ProcessorSpec{Name: pv.Name, Params: pv.Params})
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Process(pv.Input)
			if err != nil || !bytes.Equal(out, pv.Output) {
				t.Fatalf("%s %v: got %x, want %x", pv.Name, pv.Params, out, pv.Output)
			}
		}
	})
}

type answerSize struct {
	Length    int `json:"length"`
	TokenSize int `json:"token_size"`
}

// generateAnswerVectors seals v's reply and report under their keys, and
// lists the token sizes of answers around the bucket edges.
func generateAnswerVectors(t *testing.T, v *vectors) {
	var err error
	var k layer.Key
	copy(k[:], v.Reply.Key)
	if v.Reply.Padded, err = layer.PadAnswer(v.Reply.Plaintext); err != nil {
		t.Fatal(err)
	}
	if v.Reply.Token, err = layer.FernetSeal(nil, &k, v.Reply.Timestamp, v.Reply.Padded); err != nil {
		t.Fatal(err)
	}
	copy(k[:], v.Report.Key)
	if v.Report.Padded, err = layer.PadAnswer([]byte{byte(v.Report.Code), 0}); err != nil {
		t.Fatal(err)
	}
	if v.Report.Token, err = layer.FernetSeal(nil, &k, v.Reply.Timestamp, v.Report.Padded); err != nil {
		t.Fatal(err)
	}
	var fb bytes.Buffer
	wire.WriteFrame(&fb, wire.Reply, 7, v.Reply.Token)
	v.Frame.Bytes, v.Frame.Type, v.Frame.StreamID, v.Frame.Body = fb.Bytes(), int(wire.Reply), 7, v.Reply.Token

	v.AnswerSizes = nil
	for _, n := range []int{0, 2, 256, 257, 1 << 10, 1<<10 + 1, 4<<10 + 1, 16<<10 + 1, 64<<10 + 1, 256<<10 + 1, 1 << 20, 1<<20 + 1, 3 << 20} {
		v.AnswerSizes = append(v.AnswerSizes, answerSize{n, layer.AnswerSize(n)})
	}
}

// generateVectors writes testdata/vectors.json from fresh keys.
func generateVectors(t *testing.T) {
	var v vectors
	v.Comment = "ghostcomm v1 test vectors (payload version 3); see docs/PROTOCOL.md. Hex strings are raw bytes. Keys are armored OpenPGP private keys (curve25519) made for these vectors only."
	v.Keys = map[string]string{}
	kps := map[string]*layer.KeyPair{}
	for _, name := range []string{"node0", "node1", "node2", "client", "primary"} {
		k, err := pgp.GenerateKey("ghostcomm vector "+name, "", "x25519", 0)
		if err != nil {
			t.Fatal(err)
		}
		armored, err := k.Armor()
		if err != nil {
			t.Fatal(err)
		}
		v.Keys[name] = armored
		if kps[name], err = layer.NewKeyPair(k); err != nil {
			t.Fatal(err)
		}
	}
	const ts = 1767268800 // 2026-01-01T12:00:00Z, a cycle's NotBefore

	k, _ := layer.NewKey(rand.Reader)
	v.SealedBox.Recipient, v.SealedBox.Key, v.SealedBox.Timestamp = "node0", k[:], ts
	v.SealedBox.Plaintext = []byte("a sealed box for node0")
	box, err := layer.Seal(nil, kps["node0"].Enc, &k, ts, v.SealedBox.Plaintext, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v.SealedBox.Box = box

	on := &v.Onion
	on.Route, on.Next, on.Timestamp, on.PadLen = []string{"node0", "node1", "node2"}, []int{1, 2}, ts, 5
	o, err := layer.Build([]*layer.PublicKey{&kps["node0"].PublicKey, &kps["node1"].PublicKey, &kps["node2"].PublicKey}, []byte{1, 2}, ts, on.PadLen, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	on.Layer = o.Layer
	cur := o.Layer
	for i, name := range on.Route {
		on.LayerKeys = append(on.LayerKeys, o.Keys[i][:])
		ek := o.Keys[i].Derive(layer.PurposeError)
		on.ErrorKeys = append(on.ErrorKeys, ek[:])
		on.LayerSizes = append(on.LayerSizes, len(cur))
		p, err := layer.Peel(kps[name].Dec, cur)
		if err != nil {
			t.Fatal(err)
		}
		cur = p.Inner
	}
	rk := o.Keys[2].Derive(layer.PurposeReply)
	on.ReplyKey = rk[:]

	v.Reply.Key, v.Reply.Timestamp, v.Reply.Plaintext = rk[:], ts, []byte("the route's result")
	ek := o.Keys[1].Derive(layer.PurposeError)
	v.Report.Key, v.Report.Code = ek[:], int(wire.ReportNextNotFound)
	generateAnswerVectors(t, &v)

	dk, _ := layer.NewKey(rand.Reader)
	data, err := layer.Seal(nil, kps["node0"].Enc, &dk, ts, []byte("data for hop 1"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := &wire.Msg{BudgetMS: 27000, Layer: o.Layer, Data: data}
	v.Message.Bytes, v.Message.BudgetMS, v.Message.Layer, v.Message.Data = bytes.Join(m.Parts(), nil), m.BudgetMS, m.Layer, m.Data

	req := payloadRequest{client: kps["client"].Raw}
	rand.Read(req.nonce[:])
	v.PayloadRequest.Bytes, v.PayloadRequest.Nonce, v.PayloadRequest.Client = req.marshal(), req.nonce[:], "client"

	p := &payload{nonce: req.nonce, client: Fingerprint(kps["client"].Fpr), primary: kps["primary"].Raw}
	p.cycle.NotBefore, p.cycle.NotAfter, p.cycle.Grace = time.Unix(ts, 0), time.Unix(ts+600, 0), 2*time.Minute
	rand.Read(p.cycle.ID[:])
	// A sealed cycle, so that the vector shows every field of version 3.
	p.cycle.Protocol, p.cycle.Sealed = ProtocolSealed, SealedConfig{Form: FormRelay, MaxPacket: SealedSmall}
	specs := []ProcessorSpec{HashSpec("sha256", []byte{0xaa, 0xbb}, 1, true), HashSpec("sha3-256", nil, 3, false), IdentitySpec}
	for i, name := range []string{"node0", "node1", "node2"} {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		p.cycle.Nodes = append(p.cycle.Nodes, NodeInfo{Onion: Onion{ServiceID: onionaddr.ServiceID(pub), Port: 80}, PublicKey: kps[name].Raw, Processor: specs[i],
			Operator: []string{"operator alpha", "", "operator beta"}[i], SealedKey: sealedVectorKey(t)})
	}
	content, err := p.marshal()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signPayload(kps["primary"], content)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := layer.NewKey(rand.Reader)
	if v.Payload.Sealed, err = layer.Seal(nil, kps["client"].Enc, &pk, ts, signed, rand.Reader); err != nil {
		t.Fatal(err)
	}
	pv := &v.Payload
	pv.Client, pv.PrimaryFingerprint, pv.Nonce, pv.CycleID = "client", kps["primary"].Fpr[:], req.nonce[:], p.cycle.ID[:]
	pv.NotBefore, pv.NotAfter, pv.GraceSeconds = ts, ts+600, 120
	for i, n := range p.cycle.Nodes {
		pv.Nodes = append(pv.Nodes, struct {
			ServiceID   string            `json:"service_id"`
			Port        int               `json:"port"`
			Fingerprint hexBytes          `json:"fingerprint"`
			Processor   string            `json:"processor"`
			Params      map[string]string `json:"params"`
			Operator    string            `json:"operator"`
			SealedKey   hexBytes          `json:"sealed_key,omitempty"`
		}{n.Onion.ServiceID, n.Onion.Port, kps[[]string{"node0", "node1", "node2"}[i]].Fpr[:], n.Processor.Name, n.Processor.Params, n.Operator, n.SealedKey})
	}
	pv.Protocol, pv.Form, pv.MaxPacket = string(p.cycle.Protocol), string(p.cycle.Sealed.Form), p.cycle.Sealed.MaxPacket

	inv := Invite{Primary: Onion{ServiceID: p.cycle.Nodes[0].Onion.ServiceID, Port: 80}, Fingerprint: Fingerprint(kps["primary"].Fpr)}
	v.Invite.String, v.Invite.ServiceID, v.Invite.Port, v.Invite.Fingerprint = inv.String(), inv.Primary.ServiceID, 80, inv.Fingerprint[:]

	for _, spec := range []ProcessorSpec{IdentitySpec, HashSpec("sha256", nil, 1, true), HashSpec("sha256", []byte("salt"), 1, true),
		HashSpec("sha512", []byte{1, 2, 3}, 2, false), HashSpec("sha3-256", []byte("s"), 5, true), HashSpec("sha384", nil, 1, false), HashSpec("sha3-512", []byte("x"), 1, true)} {
		in := []byte("abc")
		proc, err := NewProcessor(spec)
		if err != nil {
			t.Fatal(err)
		}
		out, err := proc.Process(in)
		if err != nil {
			t.Fatal(err)
		}
		v.Processors = append(v.Processors, struct {
			Name   string            `json:"name"`
			Params map[string]string `json:"params"`
			Input  hexBytes          `json:"input"`
			Output hexBytes          `json:"output"`
		}{spec.Name, spec.Params, in, out})
	}

	out, err := json.MarshalIndent(&v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sealedVectorKey is a fresh node's sealed-mode public key.
func sealedVectorKey(t *testing.T) []byte {
	k, err := sealed.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk := k.PublicKey()
	return pk[:]
}
