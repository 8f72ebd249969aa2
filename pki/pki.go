package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kubeha/kubeha/internal/atomicfile"
	"github.com/kubeha/kubeha/metadata"
)

// Files in the PKI directory.
const (
	EtcdCACert     = "etcd-ca.crt"
	EtcdCAKey      = "etcd-ca.key"
	ClusterCACert  = "ca.crt"
	ClusterCAKey   = "ca.key"
	ClientCertFile = "kubeha-etcd-client.crt"
	ClientKeyFile  = "kubeha-etcd-client.key"
	// ServiceAccountKey signs service-account tokens (every master's
	// kube-apiserver and kube-controller-manager use the same pair);
	// ServiceAccountPub verifies them.
	ServiceAccountKey = "sa.key"
	ServiceAccountPub = "sa.pub"
	// AdminCert and AdminKey are the admin's client certificate (group
	// system:masters), for kubeha kubeconfig.
	AdminCert = "admin.crt"
	AdminKey  = "admin.key"
)

// Lifetimes and the renewal window.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry a certificate is renewed.
	RenewBefore = 30 * 24 * time.Hour
)

// FirstServiceIP is the first IP of kube-up's default service range
// (10.0.0.0/16): the in-cluster address of the kubernetes service.
const FirstServiceIP = "10.0.0.1"

// CA is a certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM string
	key     *ecdsa.PrivateKey
}

// PKI is a cluster's certificate authorities and kubeha's client certificate.
type PKI struct {
	Dir        string
	EtcdCA     *CA
	ClusterCA  *CA
	clientCert string
	clientKey  string
	saKey      string // PEM, PKCS#8
	saPub      string // PEM, PKIX
	now        func() time.Time
}

// Option changes how the PKI issues certificates (tests fix the clock).
type Option func(*PKI)

// WithClock makes the PKI use now for validity periods.
func WithClock(now func() time.Time) Option { return func(p *PKI) { p.now = now } }

// Ensure loads the PKI in dir, creating what is missing: the directory
// (0700), the etcd and cluster CAs, and kubeha's etcd client certificate
// (issued again when it expires within RenewBefore). An existing CA is never
// overwritten; a CA with a certificate but no key, or a key but no
// certificate, is an error that says so.
func Ensure(dir, cluster string, opts ...Option) (*PKI, error) {
	p := &PKI{Dir: dir, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create PKI directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict PKI directory %s: %w", dir, err)
	}
	var err error
	if p.EtcdCA, err = p.ensureCA(EtcdCACert, EtcdCAKey, cluster+"-etcd-ca"); err != nil {
		return nil, err
	}
	if p.ClusterCA, err = p.ensureCA(ClusterCACert, ClusterCAKey, cluster+"-ca"); err != nil {
		return nil, err
	}
	if err := p.ensureClient(cluster); err != nil {
		return nil, err
	}
	if err := p.ensureServiceAccount(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *PKI) path(name string) string { return filepath.Join(p.Dir, name) }

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (p *PKI) ensureCA(certName, keyName, cn string) (*CA, error) {
	certOK, err := exists(p.path(certName))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.path(certName), err)
	}
	keyOK, err := exists(p.path(keyName))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.path(keyName), err)
	}
	switch {
	case certOK && keyOK:
		return loadCA(p.path(certName), p.path(keyName))
	case certOK || keyOK:
		return nil, fmt.Errorf("%s has only one of %s and %s: kubeha never overwrites a CA; restore the missing file from a backup", p.Dir, certName, keyName)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key %s: %w", cn, err)
	}
	now := p.now()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn, Organization: []string{"kubeha"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(CALifetime), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate %s: %w", cn, err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, CertPEM: encodeCert(der), key: key}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := p.writePair(keyName, keyPEM, certName, ca.CertPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

func loadCA(certPath, keyPath string) (*CA, error) {
	certPEM, cert, err := readPEM(certPath, "CA certificate", parseCert)
	if err != nil {
		return nil, err
	}
	_, key, err := readPEM(keyPath, "CA key", parseKey)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("CA key %s does not match certificate %s", keyPath, certPath)
	}
	return &CA{Cert: cert, CertPEM: string(certPEM), key: key}, nil
}

func (p *PKI) ensureClient(cluster string) error {
	certPEM, errC := os.ReadFile(p.path(ClientCertFile))
	keyPEM, errK := os.ReadFile(p.path(ClientKeyFile))
	if errC == nil && errK == nil {
		if cert, err := parseCert(certPEM); err == nil && !Expiring(cert, p.now()) && cert.CheckSignatureFrom(p.EtcdCA.Cert) == nil {
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
				p.clientCert, p.clientKey = string(certPEM), string(keyPEM)
				return nil
			}
		}
	}
	c, k, err := p.issue(p.EtcdCA, "kubeha", []string{"kubeha:" + cluster}, nil, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return err
	}
	if err := p.writePair(ClientKeyFile, k, ClientCertFile, c); err != nil {
		return err
	}
	p.clientCert, p.clientKey = c, k
	return nil
}

// Expiring says a certificate is past or within RenewBefore of its end.
func Expiring(cert *x509.Certificate, now time.Time) bool {
	return now.Add(RenewBefore).After(cert.NotAfter)
}

// ClientTLS is kubeha's etcd client configuration: its certificate, and
// the etcd CA as the only trusted root.
func (p *PKI) ClientTLS() (*tls.Config, error) {
	pair, err := tls.X509KeyPair([]byte(p.clientCert), []byte(p.clientKey))
	if err != nil {
		return nil, fmt.Errorf("kubeha's etcd client certificate in %s is unusable", p.Dir)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.EtcdCA.Cert)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// LoadClientTLS reads kubeha's etcd client configuration from dir without
// creating anything; it returns nil when the PKI has no client certificate
// (a cluster kubeha has not bootstrapped).
func LoadClientTLS(dir string) (*tls.Config, error) {
	ok, err := exists(filepath.Join(dir, ClientCertFile))
	if err != nil || !ok {
		return nil, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, ClientCertFile))
	if err != nil {
		return nil, fmt.Errorf("read kubeha's etcd client certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, ClientKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read kubeha's etcd client key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("kubeha's etcd client certificate and key in %s do not form a pair", dir)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, EtcdCACert))
	if err != nil {
		return nil, fmt.Errorf("read the etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", filepath.Join(dir, EtcdCACert))
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ReplicaRequest names what a replica's certificates are for.
type ReplicaRequest struct {
	Cluster    string // metadata.name
	Name       string // the instance
	InternalIP string // the replica's reserved internal IP
	StaticIP   string // the cluster's static IP (the load balancer's or the single master's)
}

// ReplicaCerts are a replica's certificates and keys, PEM encoded. They are
// key material: never print them.
type ReplicaCerts struct {
	EtcdCA                  string
	PeerCert, PeerKey       string
	ServerCert, ServerKey   string
	ClusterCA               string
	APIServerCert           string
	APIServerKey            string
	APIServerEtcdClientCert string
	APIServerEtcdClientKey  string
	// The service-account key pair the cluster shares, and the client
	// certificates of kube-controller-manager and kube-scheduler.
	ServiceAccountKey     string
	ServiceAccountPub     string
	ControllerManagerCert string
	ControllerManagerKey  string
	SchedulerCert         string
	SchedulerKey          string
	// The client certificate of the load balancer's health endpoint
	// (kOps' kube-apiserver-healthcheck), which asks the local API server
	// for its readiness.
	HealthcheckCert string
	HealthcheckKey  string
	// The cluster CA's key: kube-controller-manager signs the kubelets'
	// client certificates with it (--cluster-signing-key-file), as kube-up's
	// and kubeadm's masters do.
	ClusterCAKey string
	// The master's own kubelet (CN system:node:NAME, group system:nodes),
	// which registers the master as a Node, and the add-on manager's client
	// (system:addon-manager in system:masters, as kube-up's is).
	KubeletCert, KubeletKey           string
	AddonManagerCert, AddonManagerKey string
}

// String hides the keys.
func (ReplicaCerts) String() string { return "pki.ReplicaCerts{<redacted>}" }

// GoString hides the keys from %#v too.
func (r ReplicaCerts) GoString() string { return r.String() }

// APIServerSANs are the names and IPs the API server certificate of a
// replica is valid for (the HA-masters guide: the external IP and the replica's own IP).
func APIServerSANs(req ReplicaRequest) (dns []string, ips []string) {
	dns = []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", req.Cluster + "-master", req.Name}
	// 127.0.0.1: the health endpoint asks the API server on the VM's
	// loopback, as kOps' sidecar does.
	ips = []string{FirstServiceIP, req.InternalIP, "127.0.0.1"}
	if req.StaticIP != "" {
		ips = append([]string{req.StaticIP}, ips...)
	}
	return dns, ips
}

// IssueReplica issues the certificates a replica boots with.
func (p *PKI) IssueReplica(req ReplicaRequest) (*ReplicaCerts, error) {
	if net.ParseIP(req.InternalIP) == nil {
		return nil, fmt.Errorf("issue certificates for %s: internal IP %q is not an IP", req.Name, req.InternalIP)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	out := &ReplicaCerts{EtcdCA: p.EtcdCA.CertPEM, ClusterCA: p.ClusterCA.CertPEM}
	var err error
	if out.PeerCert, out.PeerKey, err = p.issue(p.EtcdCA, req.Name+"-etcd-peer", nil, []string{req.Name}, []string{req.InternalIP}, both); err != nil {
		return nil, err
	}
	if out.ServerCert, out.ServerKey, err = p.issue(p.EtcdCA, req.Name+"-etcd-server", nil, []string{req.Name, "localhost"}, []string{req.InternalIP, "127.0.0.1"}, both); err != nil {
		return nil, err
	}
	if out.APIServerEtcdClientCert, out.APIServerEtcdClientKey, err = p.issue(p.EtcdCA, req.Name+"-apiserver-etcd-client", nil, nil, nil,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}); err != nil {
		return nil, err
	}
	dns, ips := APIServerSANs(req)
	if out.APIServerCert, out.APIServerKey, err = p.issue(p.ClusterCA, "kube-apiserver", nil, dns, ips, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}); err != nil {
		return nil, err
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	// The names Kubernetes' default RBAC grants these components.
	if out.ControllerManagerCert, out.ControllerManagerKey, err = p.issue(p.ClusterCA, "system:kube-controller-manager", nil, nil, nil, client); err != nil {
		return nil, err
	}
	if out.SchedulerCert, out.SchedulerKey, err = p.issue(p.ClusterCA, "system:kube-scheduler", nil, nil, nil, client); err != nil {
		return nil, err
	}
	if out.HealthcheckCert, out.HealthcheckKey, err = p.issue(p.ClusterCA, "kube-apiserver-healthcheck", nil, nil, nil, client); err != nil {
		return nil, err
	}
	if out.KubeletCert, out.KubeletKey, err = p.issue(p.ClusterCA, "system:node:"+req.Name, []string{"system:nodes"}, nil, nil, client); err != nil {
		return nil, err
	}
	if out.AddonManagerCert, out.AddonManagerKey, err = p.issue(p.ClusterCA, "system:addon-manager", []string{"system:masters"}, nil, nil, client); err != nil {
		return nil, err
	}
	if out.ClusterCAKey, err = encodeKey(p.ClusterCA.key); err != nil {
		return nil, err
	}
	if p.saKey == "" {
		return nil, fmt.Errorf("issue certificates for %s: the PKI in %s has no service-account key", req.Name, p.Dir)
	}
	out.ServiceAccountKey, out.ServiceAccountPub = p.saKey, p.saPub
	return out, nil
}

func (p *PKI) issue(ca *CA, cn string, orgs, dns, ips []string, usage []x509.ExtKeyUsage) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key for %s: %w", cn, err)
	}
	now := p.now()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(LeafLifetime), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: usage, DNSNames: dns, BasicConstraintsValid: true}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", fmt.Errorf("sign certificate %s: %w", cn, err)
	}
	k, err := encodeKey(key)
	if err != nil {
		return "", "", err
	}
	return encodeCert(der), k, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("read random serial: %v", err)) // crypto/rand does not fail on supported systems
	}
	return n
}

func encodeCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func encodeKey(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", errors.New("encode private key")
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// ParseCert reads the first certificate of a PEM document.
func ParseCert(pemText string) (*x509.Certificate, error) { return parseCert([]byte(pemText)) }

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(block.Bytes); err2 == nil {
			return ek, nil
		}
		return nil, errors.New("not a PKCS#8 or EC private key")
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ek, nil
}

// Metadata is the kubeha-tls document of the certificates.
func (c *ReplicaCerts) Metadata() *metadata.TLS {
	return &metadata.TLS{CA: c.EtcdCA, PeerCert: c.PeerCert, PeerKey: c.PeerKey, ServerCert: c.ServerCert, ServerKey: c.ServerKey,
		ClusterCA: c.ClusterCA, APIServerCert: c.APIServerCert, APIServerKey: c.APIServerKey,
		APIServerEtcdClientCert: c.APIServerEtcdClientCert, APIServerEtcdClientKey: c.APIServerEtcdClientKey,
		ServiceAccountKey: c.ServiceAccountKey, ServiceAccountPub: c.ServiceAccountPub,
		ControllerManagerCert: c.ControllerManagerCert, ControllerManagerKey: c.ControllerManagerKey,
		SchedulerCert: c.SchedulerCert, SchedulerKey: c.SchedulerKey,
		HealthcheckCert: c.HealthcheckCert, HealthcheckKey: c.HealthcheckKey,
		ClusterCAKey: c.ClusterCAKey, KubeletCert: c.KubeletCert, KubeletKey: c.KubeletKey,
		AddonManagerCert: c.AddonManagerCert, AddonManagerKey: c.AddonManagerKey}
}

// writePair writes a private key (mode 0600) first, then its certificate
// or public key (0644): a crash between the two leaves a key without its
// certificate, which Ensure reports instead of silently replacing.
func (p *PKI) writePair(keyName, keyPEM, pubName, pubPEM string) error {
	if err := atomicfile.Write(p.path(keyName), []byte(keyPEM), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(p.path(pubName), []byte(pubPEM), 0o644)
}

// readPEM reads the PEM file at path and parses it, saying what it is
// (what) when either fails.
func readPEM[T any](path, what string, parse func([]byte) (T, error)) ([]byte, T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return nil, zero, fmt.Errorf("read %s: %w", what, err)
	}
	v, err := parse(data)
	if err != nil {
		return nil, v, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return data, v, nil
}
