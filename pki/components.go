package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/kubeha/kubeha/internal/atomicfile"
)

// ensureServiceAccount loads or creates the service-account key pair. Like
// a CA it is never replaced: tokens it signed would stop verifying.
func (p *PKI) ensureServiceAccount() error {
	keyOK, err := exists(p.path(ServiceAccountKey))
	if err != nil {
		return fmt.Errorf("read %s: %w", p.path(ServiceAccountKey), err)
	}
	var key *ecdsa.PrivateKey
	var keyPEM string
	if keyOK {
		data, k, err := readPEM(p.path(ServiceAccountKey), "the service-account key", parseKey)
		if err != nil {
			return err
		}
		key, keyPEM = k, string(data)
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return fmt.Errorf("generate the service-account key: %w", err)
		}
		if keyPEM, err = encodeKey(key); err != nil {
			return err
		}
	}
	pub, err := encodePublic(key)
	if err != nil {
		return err
	}
	// The public key is derived, so it is written every time; the private
	// key only when new (with it, key first).
	if keyOK {
		err = atomicfile.Write(p.path(ServiceAccountPub), []byte(pub), 0o644)
	} else {
		err = p.writePair(ServiceAccountKey, keyPEM, ServiceAccountPub, pub)
	}
	if err != nil {
		return err
	}
	p.saKey, p.saPub = keyPEM, pub
	return nil
}

// Admin returns the admin's client certificate and key (CN kubeha-admin,
// group system:masters), issuing them when missing, expiring or not
// signed by the cluster CA. The key file is 0600.
func (p *PKI) Admin() (certPEM, keyPEM string, err error) {
	c, errC := os.ReadFile(p.path(AdminCert))
	k, errK := os.ReadFile(p.path(AdminKey))
	if errC == nil && errK == nil {
		if cert, err := parseCert(c); err == nil && !Expiring(cert, p.now()) && cert.CheckSignatureFrom(p.ClusterCA.Cert) == nil {
			if _, err := tls.X509KeyPair(c, k); err == nil {
				return string(c), string(k), nil
			}
		}
	}
	certPEM, keyPEM, err = p.issue(p.ClusterCA, "kubeha-admin", []string{"system:masters"}, nil, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return "", "", err
	}
	if err := p.writePair(AdminKey, keyPEM, AdminCert, certPEM); err != nil {
		return "", "", err
	}
	return certPEM, keyPEM, nil
}

func encodePublic(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", errors.New("encode public key")
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}
