#!/usr/bin/env bash
# Generate the per-cluster PKI and the admin kubeconfig with the openssl CLI.
#
#   ca.{crt,key}         cluster CA (signs everything below; the apiserver's --client-ca-file)
#   apiserver.{crt,key}  serving certificate: 127.0.0.1, the bridge address, the service IP, kubernetes.*
#   admin.{crt,key}      client certificate CN=pylon-admin O=system:masters (kubectl, controller-manager,
#                        node agent, conformance suite; also the apiserver's kubelet client credential)
#   sa.{key,pub}         service-account token signing key pair
#
# Usage: pki.sh DIR APISERVER_URL NODE_IP
set -euo pipefail
dir=$1 server=$2 node_ip=$3
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=pylon-cluster-ca" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
	-out ca.crt 2>/dev/null

sign() {	# name subject extensions
	key "$1.key"
	openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
		-extfile "$1.ext" -out "$1.crt" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$node_ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=pylon-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

key sa.key
openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null

b64() { base64 -w0 <"$1"; }
cat >admin.kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: pylon
  cluster:
    server: $server
    certificate-authority-data: $(b64 ca.crt)
users:
- name: pylon-admin
  user:
    client-certificate-data: $(b64 admin.crt)
    client-key-data: $(b64 admin.key)
contexts:
- name: pylon
  context:
    cluster: pylon
    user: pylon-admin
current-context: pylon
KC
chmod 600 admin.kubeconfig
