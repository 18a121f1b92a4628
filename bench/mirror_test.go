package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
)

// TestPayloadMirrorMatchesVectors pins cycle.go's copies of the library's
// unexported payload encoding to the library's own test vector: the signed
// content of testdata/vectors.json's payload must be exactly what
// payloadBody and marshalNodes produce from the vector's fields. If the
// library changes its payload format, this fails until the copies follow.
func TestPayloadMirrorMatchesVectors(t *testing.T) {
	raw, err := os.ReadFile("../testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Keys    map[string]string `json:"keys"`
		Payload struct {
			Sealed       hexBytes `json:"sealed"`
			Client       string   `json:"client"`
			Nonce        hexBytes `json:"nonce"`
			CycleID      hexBytes `json:"cycle_id"`
			NotBefore    int64    `json:"not_before"`
			NotAfter     int64    `json:"not_after"`
			GraceSeconds int64    `json:"grace_seconds"`
			Nodes        []struct {
				ServiceID string            `json:"service_id"`
				Port      int               `json:"port"`
				Processor string            `json:"processor"`
				Params    map[string]string `json:"params"`
				Operator  string            `json:"operator"`
				SealedKey hexBytes          `json:"sealed_key"`
			} `json:"nodes"`
			Protocol  string `json:"protocol"`
			Form      string `json:"form"`
			MaxPacket int    `json:"max_packet"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	pv := v.Payload

	keys := map[string]*layer.KeyPair{}
	for name, armored := range v.Keys {
		k, err := pgp.NewKeyFromArmored(armored)
		if err != nil {
			t.Fatal(err)
		}
		if keys[name], err = layer.NewKeyPair(k); err != nil {
			t.Fatal(err)
		}
	}
	opened, err := layer.Open(keys[pv.Client].Dec, pv.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	sigLen := int(binary.BigEndian.Uint16(opened.Msg))
	content := opened.Msg[2+sigLen:]

	var infos []ghostcomm.NodeInfo
	for i, n := range pv.Nodes {
		infos = append(infos, ghostcomm.NodeInfo{
			Onion:     ghostcomm.Onion{ServiceID: n.ServiceID, Port: n.Port},
			PublicKey: keys[[]string{"node0", "node1", "node2"}[i]].Raw,
			Processor: ghostcomm.ProcessorSpec{Name: n.Processor, Params: n.Params},
			Operator:  n.Operator,
		})
	}
	nodes, err := marshalNodes(infos)
	if err != nil {
		t.Fatal(err)
	}
	// The protocol announcement (docs/PROTOCOL.md): protocol, form,
	// largest class, then a sealed cycle's keys.
	tail := layeredTail
	if pv.Protocol == "sealed" {
		tail = []byte{2, map[string]byte{"chain": 1, "relay": 2}[pv.Form], map[int]byte{2048: 1, 32768: 2}[pv.MaxPacket]}
		for _, n := range pv.Nodes {
			tail = append(tail, n.SealedKey...)
		}
	}
	var id [16]byte
	copy(id[:], pv.CycleID)
	var nonce [32]byte
	copy(nonce[:], pv.Nonce)
	want := payloadBody(id, time.Unix(pv.NotBefore, 0), time.Unix(pv.NotAfter, 0),
		time.Duration(pv.GraceSeconds)*time.Second, nonce, keys["client"].Fpr, keys["primary"].Raw, nodes, tail)
	if !bytes.Equal(content, want) {
		t.Fatalf("bench's payload encoding (%d bytes) differs from the library's (%d bytes)", len(want), len(content))
	}
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}
