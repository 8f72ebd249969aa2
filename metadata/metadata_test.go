package metadata

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseEtcd(t *testing.T) {
	good := Etcd{Name: "m1", PeerURL: "https://10.0.0.2:2380", ClientURL: "https://10.0.0.2:2379",
		InitialCluster: "m1=https://10.0.0.2:2380", InitialClusterState: StateNew, StartAfter: []string{"https://10.0.0.3:2380"}}
	got, err := ParseEtcd(Encode(good))
	if err != nil || !reflect.DeepEqual(*got, good) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	tests := []struct {
		doc, want string
	}{
		{`not json`, "decode kubeha-etcd metadata"},
		{`{"name":"m1","extra":1}`, `unknown field "extra"`},
		{`{"peerURL":"https://a:1"}`, "name is empty"},
		{`{"name":"m1","peerURL":"a:1","clientURL":"https://a:1"}`, "peerURL"},
		{`{"name":"m1","peerURL":"https://a:1","clientURL":"https://a"}`, "clientURL"},
		{`{"name":"m1","peerURL":"https://a:1","clientURL":"https://a:2","initialClusterState":"old"}`, `initialClusterState "old"`},
		{`{"name":"m1","peerURL":"https://a:1","clientURL":"https://a:2","initialClusterState":"new","initialCluster":"m2=https://b:1"}`, "does not name member m1"},
	}
	for _, tt := range tests {
		if _, err := ParseEtcd(tt.doc); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseEtcd(%s) = %v, want %q", tt.doc, err, tt.want)
		}
	}
}

func TestTLSNeverPrintsKeys(t *testing.T) {
	secret := "-----BEGIN EC PRIVATE KEY-----\nSECRETSECRET\n-----END EC PRIVATE KEY-----"
	bundle := TLS{CA: "ca", PeerCert: "pc", PeerKey: secret, ServerCert: "sc", ServerKey: secret}
	for _, s := range []string{fmt.Sprint(bundle), fmt.Sprintf("%v %+v %#v %s", bundle, bundle, bundle, &bundle)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("key material printed: %s", s)
		}
	}
	got, err := ParseTLS(Encode(bundle))
	if err != nil || got.PeerKey != secret {
		t.Fatalf("round trip: %v", err)
	}
	// Errors never quote the content.
	_, err = ParseTLS(`{"peerKey":"` + "SECRETSECRET" + `"`)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v", err)
	}
	_, err = ParseTLS(`{"peerKey":"SECRETSECRET"}`)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v", err)
	}
}
